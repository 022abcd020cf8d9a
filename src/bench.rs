//! `pretext bench`: every pretext task trained the same way from the same
//! initialisation on the eval set's own corpus (unsupervised domain
//! adaptation, as in Contriever's BEIR runs), then evaluated on that set,
//! next to the untrained initialisation and BM25. One table, a CSV and a
//! chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use plotters::prelude::*;
use serde::Serialize;

pub use crate::config::bench::{BenchSection, Variant};
use crate::config::Config;
use crate::eval::beir::Beir;
use crate::eval::metrics::{evaluate, Measure, Run};
use crate::eval::{embed_all, search};
use crate::model::pretrained::Pretrained;
use crate::tasks_by_name;
use crate::tokenize::Side;
use crate::train::{Start, TrainProgress, Trainer};

/// One row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Task, `init (untrained)` or `BM25`.
    pub name: String,
    /// Mean metrics by ir-measures name.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Final training loss and pretext accuracy, for trained rows.
    pub final_loss: Option<f32>,
    /// Final pretext accuracy.
    pub final_accuracy: Option<f32>,
    /// Wall time of training and evaluation, seconds.
    pub seconds: f64,
}

fn eval_model(dir: &Path, data: &Beir, batch: usize, device: &Device) -> Result<Run> {
    let model = Pretrained::load(dir, device, None)?;
    let docs = embed_all(&model, &data.corpus, Side::Document, batch, &mut |_| {})?;
    let queries = embed_all(&model, &data.queries, Side::Query, batch, &mut |_| {})?;
    search(
        &queries,
        &data.queries,
        &docs,
        &data.corpus,
        1000,
        256,
        None,
    )
}

/// Runs the benchmark; `progress` hears about each row.
pub fn run(
    base: &Config,
    bench: &BenchSection,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let data = Beir::load(&bench.data, &bench.split)?;
    for w in &data.warnings {
        progress(&format!("warning: {w}"));
    }
    let device = crate::train::device(&base.train.device)?;
    std::fs::create_dir_all(&bench.out)
        .with_context(|| format!("creating {}", bench.out.display()))?;
    // One tokenizer for every run, trained once, so every task starts from
    // the same initialisation and no run pays for training it again.
    let mut base = base.clone();
    base.corpus.path = bench.data.join("corpus.jsonl");
    base.corpus.skip_bad = true;
    if base.model.tokenizer.is_none() && base.model.init.is_none() {
        crate::train::load_or_train_tokenizer(&base, &bench.out.join("tokenizer.json"))?;
        base.model.tokenizer = Some(bench.out.join("tokenizer.json"));
    }
    let base = &base;
    let mut rows = Vec::new();
    // (row name, run directory, variant)
    let mut names: Vec<(String, String, Option<&Variant>)> = Vec::new();
    if bench.init_row {
        names.push(("init".into(), "init".into(), None));
    }
    names.extend(bench.tasks.iter().map(|t| (t.clone(), t.clone(), None)));
    names.extend(
        bench
            .variants
            .iter()
            .map(|v| (v.name.clone(), v.dir_name(), Some(v))),
    );
    for (name, dir, variant) in names {
        let started = std::time::Instant::now();
        progress(&format!("{name}: training"));
        // Pretext tasks see the eval set's corpus only, never its queries.
        let mut config = match variant {
            Some(v) => v.apply(base)?,
            None => base.clone(),
        };
        config.train.out = bench.out.join(&dir);
        config.train.pairs = None;
        if name != "init" && variant.is_none() {
            config.task = tasks_by_name(&name)?;
        }
        let mut trainer = Trainer::new(config.clone(), Start::ResumeIfAny)?;
        let report = if name == "init" {
            trainer.save_initial()?
        } else {
            trainer.run(&mut NoProgress)?
        };
        // A resumed run that had nothing left to train reports its last
        // logged step.
        let last = report
            .last
            .clone()
            .or_else(|| crate::train::last_logged_step(&report.run));
        let model_dir = bench.out.join(&dir).join("model");
        crate::export::export(&report.checkpoint, &model_dir)?;
        progress(&format!("{name}: evaluating"));
        let run = eval_model(&model_dir, &data, bench.eval_batch_size, &device)?;
        let (metrics, _) = evaluate(&data.qrels, &run, &Measure::DEFAULT);
        rows.push(Row {
            name: if name == "init" {
                "init (untrained)".into()
            } else {
                name.clone()
            },
            metrics,
            final_loss: last.as_ref().map(|l| l.loss),
            final_accuracy: last.as_ref().map(|l| l.accuracy),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if bench.bm25_row {
        let started = std::time::Instant::now();
        progress("BM25");
        let docs: Vec<(String, String)> = data
            .corpus
            .iter()
            .map(|d| (d.id.clone(), d.text.clone()))
            .collect();
        let index = pretext_tasks::bm25::Bm25Index::build(&docs, Default::default());
        let queries: Vec<(String, String)> = data
            .queries
            .iter()
            .map(|q| (q.id.clone(), q.text.clone()))
            .collect();
        let run: Run = index
            .search_all(&queries, 1001)
            .into_iter()
            .map(|(q, hits)| {
                let hits = hits
                    .into_iter()
                    .filter(|(d, _)| *d != q)
                    .take(1000)
                    .collect();
                (q, hits)
            })
            .collect();
        let (metrics, _) = evaluate(&data.qrels, &run, &Measure::DEFAULT);
        rows.push(Row {
            name: "BM25".into(),
            metrics,
            final_loss: None,
            final_accuracy: None,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    write_outputs(&rows, bench, base)?;
    Ok(rows)
}

struct NoProgress;

impl TrainProgress for NoProgress {
    fn step(&mut self, _: &crate::train::StepLog) {}
}

const COLUMNS: [&str; 5] = ["nDCG@10", "R@100", "R@1000", "RR@10", "AP@100"];

/// The Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| run | nDCG@10 | R@100 | R@1000 | RR@10 | AP@100 | final loss | pretext acc. | time |\n",
    );
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = write!(s, "| {} ", r.name);
        for c in COLUMNS {
            let _ = write!(s, "| {:.4} ", r.metrics.get(c).copied().unwrap_or(f64::NAN));
        }
        let opt = |v: Option<f32>| v.map_or("".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} s |",
            opt(r.final_loss),
            opt(r.final_accuracy),
            r.seconds
        );
    }
    s
}

fn write_outputs(rows: &[Row], bench: &BenchSection, base: &Config) -> Result<()> {
    let out = &bench.out;
    let model = match &base.model.init {
        Some(dir) => format!("init {}", dir.display()),
        None => format!("preset {}", base.model.preset),
    };
    let header = format!(
        "Eval set: {} ({} split). Model: {model}, {} steps of batch {}, lr {}, memory {:?}, seed {}.\n\n",
        bench.data.display(),
        bench.split,
        base.train.steps,
        base.train.batch_size,
        base.train.lr,
        base.train.memory,
        base.seed
    );
    crate::atomic::write(&out.join("table.md"), header + &table(rows))?;
    let mut csv =
        String::from("run,nDCG@10,R@100,R@1000,RR@10,AP@100,final_loss,final_accuracy,seconds\n");
    for r in rows {
        let vals: Vec<String> = COLUMNS
            .iter()
            .map(|c| format!("{:.6}", r.metrics.get(*c).copied().unwrap_or(f64::NAN)))
            .collect();
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.1}",
            r.name,
            vals.join(","),
            r.final_loss.map_or(String::new(), |v| v.to_string()),
            r.final_accuracy.map_or(String::new(), |v| v.to_string()),
            r.seconds
        );
    }
    std::fs::write(out.join("results.csv"), csv)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(rows)?,
    )?;
    chart(rows, out)
}

/// The chart as `chart.svg` and `chart.png` in `dir`.
fn chart(rows: &[Row], dir: &Path) -> Result<()> {
    crate::plot::register_fonts();
    let label = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4) as u32;
    let size = (760 + 7 * label, 90 + 44 * rows.len() as u32);
    let svg = dir.join("chart.svg");
    draw(SVGBackend::new(&svg, size).into_drawing_area(), rows, label)
        .with_context(|| format!("drawing {}", svg.display()))?;
    let png = dir.join("chart.png");
    draw(
        BitMapBackend::new(&png, size).into_drawing_area(),
        rows,
        label,
    )
    .with_context(|| format!("drawing {}", png.display()))
}

/// Horizontal bars of nDCG@10 and R@100 per run (names on the left, so
/// long variant names stay readable).
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Row],
    label: u32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let top = rows
        .iter()
        .flat_map(|r| ["nDCG@10", "R@100"].map(|m| r.metrics.get(m).copied().unwrap_or(0.0)))
        .fold(0.05, f64::max)
        * 1.1;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("nDCG@10 and R@100 per run", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(20 + 7 * label)
        .build_cartesian_2d(0f64..top, 0f64..n as f64)
        .map_err(|e| err(&e))?;
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            // Row i is drawn top-down at y = n - i - 0.5.
            let i = n as f64 - y - 0.5;
            if (i - i.round()).abs() < 0.01 && i >= -0.01 && (i.round() as usize) < n {
                names[i.round() as usize].clone()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    for (k, (metric, color)) in [("nDCG@10", BLUE), ("R@100", RED)].into_iter().enumerate() {
        let bars = rows.iter().enumerate().map(|(i, r)| {
            let y0 = (n - i - 1) as f64 + 0.55 - 0.4 * k as f64;
            let v = r.metrics.get(metric).copied().unwrap_or(0.0);
            Rectangle::new([(0.0, y0), (v, y0 + 0.38)], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(|e| err(&e))?
            .label(metric)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_negative_variants_apply() {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/bench-negatives.toml");
        let base = crate::config::ConfigBuilder::new(Some(&p))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(base.bench.variants.len(), 6);
        let dense = base.bench.variants[4].apply(&base).unwrap();
        assert_eq!(
            dense.negatives.source,
            pretext_tasks::negatives::Source::Dense
        );
        assert_eq!(dense.negatives.range_max, 50);
        assert_eq!(dense.train.memory, crate::config::Memory::Moco);
        let none = base.bench.variants[0].apply(&base).unwrap();
        assert_eq!(none.train.memory, crate::config::Memory::None);
        assert_eq!(
            base.bench.variants[3].dir_name(),
            "queue-bm25-hard-denoised"
        );
        let bad = Variant {
            name: "x".into(),
            task: "crop".into(),
            set: vec!["negatives.sorce=bm25".into()],
        };
        let err = format!("{:#}", bad.apply(&base).unwrap_err());
        assert!(err.contains("sorce"), "{err}");
    }
}
