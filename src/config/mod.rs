//! The TOML configuration every subcommand reads: one file, one section per
//! stage, every field with a default and `deny_unknown_fields`, so a typo is
//! an error naming the field instead of a silently ignored setting.
//!
//! Command-line flags are applied as overrides (`--set task.window=128`) on
//! the parsed TOML before it is checked, so flags and files share one path.

use std::path::{Path, PathBuf};

use pretext_tasks::augment::Augmentations;
use pretext_tasks::corpus::{Corpus, CorpusConfig, DocSep, Format, JsonFields};
use pretext_tasks::formats::PairFormat;
use pretext_tasks::negatives::NegativesConfig;
use pretext_tasks::pipeline::ReadOptions;
use pretext_tasks::shard::Shard;
use pretext_tasks::tasks::TaskSpec;
use serde::{Deserialize, Serialize};

pub mod bench;
pub mod check;
mod eval;
mod train;

pub use bench::BenchSection;
pub use eval::EvalSection;
pub use train::{
    BatchSection, ConsistencyFilter, CrossEncoderSection, CrossLoss, Distill, EmbeddingInit,
    GroupBy, Ltre, LtreTeacher, LtreWeighting, MaxLen, Memory, ModelKind, ModelSection, ScoreLoss,
    TeacherScores, TrainMode, TrainSection,
};

/// A whole run's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Seed of every random choice.
    pub seed: u64,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Where the text comes from.
    pub corpus: CorpusSection,
    /// The pretext task.
    pub task: TaskSpec,
    /// Augmentations applied to the task's pairs.
    pub augment: Augmentations,
    /// `pretext pairs` output.
    pub pairs: PairsSection,
    /// Negatives added to pairs (`pairs`, `train`) or mined (`mine`).
    pub negatives: NegativesConfig,
    /// The encoder.
    pub model: ModelSection,
    /// Training.
    pub train: TrainSection,
    /// What pairs may share a training batch.
    pub batch: BatchSection,
    /// A cross-encoder's training (`model.kind = "cross-encoder"`).
    pub cross_encoder: CrossEncoderSection,
    /// Evaluation during training.
    pub eval: EvalSection,
    /// `pretext bench`.
    pub bench: BenchSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 42,
            threads: 0,
            corpus: CorpusSection::default(),
            task: TaskSpec::default(),
            augment: Augmentations::default(),
            pairs: PairsSection::default(),
            negatives: NegativesConfig::default(),
            model: ModelSection::default(),
            train: TrainSection::default(),
            batch: BatchSection::default(),
            cross_encoder: CrossEncoderSection::default(),
            eval: EvalSection::default(),
            bench: BenchSection::default(),
        }
    }
}

/// The `[corpus]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorpusSection {
    /// A file or a folder.
    pub path: PathBuf,
    /// `auto`, `text` or `jsonl`.
    pub format: Format,
    /// Plain text: `line` or `blank`.
    pub doc_sep: DocSep,
    /// JSONL field names.
    pub fields: JsonFields,
    /// File extensions read below a folder.
    pub extensions: Vec<String>,
    /// The shard `i/n` to read.
    pub shard: Shard,
    /// Skip bad records (and report them) instead of stopping.
    pub skip_bad: bool,
}

impl Default for CorpusSection {
    fn default() -> Self {
        let reader = CorpusConfig::default();
        CorpusSection {
            path: PathBuf::from("corpora/python-docs"),
            format: reader.format,
            doc_sep: reader.doc_sep,
            fields: reader.fields,
            extensions: reader.extensions,
            shard: Shard::ALL,
            skip_bad: false,
        }
    }
}

impl CorpusSection {
    /// Opens the corpus, naming it in the error.
    pub fn open(&self) -> anyhow::Result<Corpus> {
        use anyhow::Context;
        Corpus::open(&self.path, self.reader())
            .with_context(|| format!("opening corpus {}", self.path.display()))
    }

    /// Shard and bad-record handling as the library's walk options.
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            shard: self.shard,
            skip_bad: self.skip_bad,
            ..ReadOptions::default()
        }
    }

    /// The reader settings of the library.
    pub fn reader(&self) -> CorpusConfig {
        CorpusConfig {
            format: self.format,
            doc_sep: self.doc_sep,
            fields: self.fields.clone(),
            extensions: self.extensions.clone(),
            allow_empty: false,
        }
    }
}

/// The `[pairs]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairsSection {
    /// Output file (`-` for standard output).
    pub out: PathBuf,
    /// `sentence-transformers`, `flag` or `tevatron`.
    pub format: PairFormat,
    /// Add doc id, task and byte offsets to each line.
    pub with_meta: bool,
}

impl Default for PairsSection {
    fn default() -> Self {
        PairsSection {
            out: PathBuf::from("pairs.jsonl"),
            format: PairFormat::default(),
            with_meta: false,
        }
    }
}

/// An error in a configuration, naming the file (or flag) and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("pretext config error: cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not describe a valid configuration.
    #[error("pretext config error: {origin}: {message}")]
    Invalid {
        /// The file, or "command line".
        origin: String,
        /// What the parser said (line, column and field included).
        message: String,
    },
    /// A `--set key=value` that is not of that form.
    #[error("pretext config error: --set `{0}`: expected key=value, e.g. task.window=128")]
    BadOverride(String),
}

/// A configuration being assembled: a TOML table plus overrides.
pub struct ConfigBuilder {
    table: toml::Table,
    origin: String,
    /// The file's text while no override has touched it: parsing it again
    /// gives errors with line and column.
    text: Option<String>,
    /// The table before any override, and the overrides in order: when the
    /// result does not parse, the override that broke it is named.
    base: toml::Table,
    overrides: Vec<(String, toml::Value)>,
    /// The file's text, kept to locate an error of the file itself.
    file_text: Option<String>,
}

impl ConfigBuilder {
    /// Starts from a configuration already built (to apply overrides to it).
    pub fn from_config(config: &Config, origin: &str) -> Result<ConfigBuilder, ConfigError> {
        let table = toml::Table::try_from(config).map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        Ok(ConfigBuilder {
            base: table.clone(),
            table,
            origin: origin.to_string(),
            text: None,
            overrides: Vec::new(),
            file_text: None,
        })
    }

    /// Starts from the defaults, or from a file when one is given.
    pub fn new(path: Option<&Path>) -> Result<ConfigBuilder, ConfigError> {
        let Some(path) = path else {
            return Ok(ConfigBuilder {
                table: toml::Table::new(),
                origin: "command line".into(),
                text: None,
                base: toml::Table::new(),
                overrides: Vec::new(),
                file_text: None,
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Invalid {
                origin: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(ConfigBuilder {
            base: table.clone(),
            table,
            origin: path.display().to_string(),
            file_text: Some(text.clone()),
            text: Some(text),
            overrides: Vec::new(),
        })
    }

    /// Sets a dotted key to a value written as TOML (a bare word that is
    /// not valid TOML is taken as a string).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        let value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        self.set_value(key, value)
    }

    /// Sets a dotted key to a TOML value.
    pub fn set_value(&mut self, key: &str, value: toml::Value) -> &mut Self {
        if self.text.take().is_some() {
            self.origin.push_str(" with command-line overrides");
        }
        self.overrides.push((key.to_string(), value.clone()));
        set_in(&mut self.table, key, value);
        self
    }

    /// Applies a `key=value` override string.
    pub fn set_pair(&mut self, kv: &str) -> Result<&mut Self, ConfigError> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| ConfigError::BadOverride(kv.to_string()))?;
        Ok(self.set(k.trim(), v.trim()))
    }

    /// Chooses the task by name, keeping the file's parameters when the file
    /// already configures that task.
    pub fn task(&mut self, name: &str) -> Result<&mut Self, ConfigError> {
        let same = self
            .table
            .get("task")
            .and_then(|t| t.get("type"))
            .and_then(|t| t.as_str())
            == Some(name);
        if !same {
            let spec = TaskSpec::by_name(name).ok_or_else(|| ConfigError::Invalid {
                origin: "--task".into(),
                message: format!(
                    "unknown task `{name}`; expected one of {}",
                    TaskSpec::NAMES.join(", ")
                ),
            })?;
            let value = toml::Value::try_from(&spec).map_err(|e| ConfigError::Invalid {
                origin: "--task".into(),
                message: e.to_string(),
            })?;
            self.set_value("task", value);
        }
        Ok(self)
    }

    /// A parse error of the whole table, with the override that caused it
    /// named (`--set train.batch_size=abc` names `train.batch_size`): the
    /// overrides are applied to the base one by one until one fails.
    fn explain(&self, e: toml::de::Error) -> String {
        if let Some(text) = &self.file_text {
            if let Err(e) = toml::from_str::<Config>(text) {
                return e.to_string();
            }
        }
        let mut table = self.base.clone();
        for (key, value) in &self.overrides {
            set_in(&mut table, key, value.clone());
            if let Err(e) = parse_table(&table) {
                return format!("`{key}` = {value}: {}", e.message());
            }
        }
        e.message().to_string()
    }

    /// Checks and builds the configuration.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: self.origin.clone(),
            message,
        };
        let config: Config = match &self.text {
            Some(text) => toml::from_str(text).map_err(|e| invalid(e.to_string()))?,
            None => parse_table(&self.table).map_err(|e| invalid(self.explain(e)))?,
        };
        let problems = check::problems(&config);
        match problems.len() {
            0 => Ok(config),
            1 => Err(invalid(problems.into_iter().next().expect("one"))),
            n => Err(invalid(format!(
                "{n} problems:\n  - {}",
                problems.join("\n  - ")
            ))),
        }
    }
}

/// Sets a dotted key in a TOML table, making the tables on the way.
fn set_in(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut table = table;
    for p in parts {
        let entry = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("made a table above");
    }
    table.insert(last.to_string(), value);
}

fn parse_table(table: &toml::Table) -> Result<Config, toml::de::Error> {
    let mut table = table.clone();
    // `--set train.loss.temperature=0.1` on a config without a loss table
    // means the default loss (InfoNCE) with that temperature.
    if let Some(loss) = table
        .get_mut("train")
        .and_then(|t| t.get_mut("loss"))
        .and_then(|l| l.as_table_mut())
    {
        loss.entry("type")
            .or_insert_with(|| toml::Value::String("infonce".into()));
    }
    toml::Value::Table(table).try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        ConfigBuilder::new(Some(&p))?.build()
    }

    #[test]
    fn unknown_and_ill_typed_fields_are_named() {
        let e = from("[task]\ntype = \"crop\"\nwindoww = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("windoww"), "{e}");
        let e = from("seed = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("seed") || e.contains("integer"), "{e}");
        let e = from("[task]\ntype = \"crop\"\nratio_min = 0.9\nratio_max = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ratio_min"), "{e}");
        let e = from("[corpus]\nshard = \"3/2\"\n").unwrap_err().to_string();
        assert!(e.contains("shard"), "{e}");
    }

    /// The message of building the defaults with `sets` applied.
    fn problem(sets: &[&str]) -> String {
        let mut b = ConfigBuilder::new(None).unwrap();
        for kv in sets {
            b.set_pair(kv).unwrap();
        }
        match b.build() {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn combinations_that_cannot_work_are_refused_naming_their_fields() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["train.loss.temperature=0"], &["train.loss.temperature"]),
            (
                &["train.loss.temperature=-0.05"],
                &["train.loss.temperature"],
            ),
            (&["train.loss.temperature=nan"], &["train.loss.temperature"]),
            (&["train.lr=nan"], &["train.lr"]),
            (&["train.lr=inf"], &["train.lr"]),
            (&["model.max_len=0"], &["model.max_len"]),
            (&["model.max_len=513"], &["model.max_len", "512"]),
            (&["threads=100000"], &["threads", "cap"]),
            (
                &["negatives.source=\"bm25\"", "negatives.bm25.k1=-1"],
                &["negatives.bm25.k1"],
            ),
            (
                &["negatives.source=\"bm25\"", "negatives.bm25.b=1.5"],
                &["negatives.bm25.b"],
            ),
            (
                &["train.loss={type=\"triplet\"}"],
                &["triplet", "train.memory"],
            ),
            (
                &[
                    "train.loss.symmetric=true",
                    "train.memory=\"none\"",
                    "train.loss.in_batch=false",
                    "train.hard_negatives=1",
                ],
                &["symmetric", "in_batch = false", "hard negatives"],
            ),
            (&["train.loss.symmetric=true"], &["symmetric", "queue"]),
            (
                &["train.memory=\"none\"", "train.loss.in_batch=false"],
                &["in_batch = false", "no negatives"],
            ),
            (
                &[
                    "negatives.source=\"dense\"",
                    "negatives.refresh_encoder=\"momentum\"",
                    "train.memory=\"none\"",
                ],
                &["refresh_encoder", "moco"],
            ),
            (
                &["batch.one_per_document=true", "train.pairs=\"p.jsonl\""],
                &["batch.one_per_document", "train.pairs"],
            ),
            (&["batch.one_per_doc=true"], &["one_per_doc"]),
            (&["train.batch_size=abc"], &["train.batch_size", "abc"]),
            (&["train.steps=\"five\""], &["train.steps"]),
        ];
        for (sets, words) in cases {
            let e = problem(sets);
            for w in *words {
                assert!(e.contains(w), "{sets:?}: `{w}` not in: {e}");
            }
        }
        // Several problems are reported together.
        let e = problem(&["train.lr=nan", "threads=5000", "model.max_len=0"]);
        assert!(
            e.contains("3 problems") && e.contains("train.lr") && e.contains("threads"),
            "{e}"
        );
        // What does work is accepted.
        assert_eq!(problem(&["train.loss.temperature=0.1"]), "");
        assert_eq!(
            problem(&["train.loss={type=\"triplet\"}", "train.memory=\"none\""]),
            ""
        );
        assert_eq!(
            problem(&["train.loss.symmetric=true", "train.memory=\"none\""]),
            ""
        );
    }

    #[test]
    fn a_file_with_a_wrong_type_names_the_field_and_line() {
        let e = from("[train]\nsteps = \"five\"\n").unwrap_err().to_string();
        assert!(
            e.contains("c.toml") && e.contains("steps") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn overrides_and_task_choice() {
        let mut b = ConfigBuilder::new(None).unwrap();
        b.task("spans").unwrap();
        b.set_pair("task.max_pairs_per_doc=2").unwrap();
        b.set_pair("corpus.path=some/where").unwrap();
        b.set_pair("augment.ops=[{type = \"delete\", p = 0.1}]")
            .unwrap();
        let c = b.build().unwrap();
        match c.task {
            TaskSpec::Spans(s) => assert_eq!(s.max_pairs_per_doc, 2),
            t => panic!("wrong task {t:?}"),
        }
        assert_eq!(c.corpus.path, PathBuf::from("some/where"));
        assert_eq!(c.augment.ops.len(), 1);
        assert!(b.task("nope").is_err());
        assert!(b.set_pair("novalue").is_err());
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let experiments = std::fs::read_dir(dir.join("experiments")).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap().chain(experiments) {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                let mut b = ConfigBuilder::new(Some(&p)).unwrap();
                // An adaptation recipe is run with `--init MODEL_DIR`.
                let text = std::fs::read_to_string(&p).unwrap();
                if text.contains("--init MODEL_DIR") && !text.contains("\ninit =") {
                    let model = dir.join("../tests/fixtures/cross_encoder/one-logit");
                    // A tiny BERT folder (64 positions) stands in for it.
                    b.set_pair(&format!("model.init={}", model.display()))
                        .unwrap()
                        .set_pair("model.max_len=32")
                        .unwrap();
                    if text.contains("\ndoc_max_len =") {
                        b.set_pair("model.doc_max_len=32").unwrap();
                    }
                }
                b.build().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }
}
