//! The training loop: the data stream, dense refreshes when due, one step
//! at a time, metrics, checkpoints on schedule and at the end, the curves
//! and the negatives report.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use pretext_tasks::negatives::{CorpusTexts, MiningStats, RefreshEncoder, SearchIndex, Source};
use pretext_tasks::pipeline::ReadOptions;

use super::data::{BatchStream, Grouping, PairFilter, StreamConfig};
use super::evaluate::Evaluator;
use super::metrics::{self, StepLog};
use super::setup::{eval_data, negatives_for, pair_source};
use super::{ance, ltre, TrainProgress, TrainReport, Trainer};
use crate::config::{GroupBy, TrainMode};
use crate::filter::Filtered;
use crate::model::pretrained::Pretrained;

impl Trainer {
    /// The batch groups of `batch.group_by`; clusters from the init model
    /// folder (not the weights being trained, so a resumed run groups as
    /// the unbroken one did).
    fn grouping(&self) -> Result<Grouping> {
        Ok(match self.config.batch.group_by {
            None => Grouping::None,
            Some(GroupBy::File) => Grouping::File,
            Some(GroupBy::Cluster) => {
                let init = self
                    .config
                    .model
                    .init
                    .as_ref()
                    .context("batch.group_by = \"cluster\" needs model.init")?;
                let model = Pretrained::load(init, &self.device, Some(self.config.model.max_len))?;
                let c = &self.config.corpus;
                let texts = CorpusTexts::load(&c.open()?, c.read_options())?;
                let clusters = super::cluster::document_clusters(
                    &model,
                    &texts,
                    self.config.batch.clusters,
                    self.config.train.batch_size,
                    self.config.seed,
                )?;
                Grouping::Cluster(Arc::new(clusters))
            }
        })
    }

    /// Writes the current (e.g. untrained) state as a checkpoint, for
    /// evaluating the initialisation.
    pub fn save_initial(&mut self) -> Result<TrainReport> {
        let checkpoint = self.save()?;
        Ok(TrainReport {
            last: None,
            checkpoint,
            run: self.run_dir.root().to_path_buf(),
            best: None,
            filtered: None,
        })
    }

    /// Trains until `train.steps`, checkpointing on the way and at the end.
    pub fn run(&mut self, progress: &mut dyn TrainProgress) -> Result<TrainReport> {
        let t = self.config.train.clone();
        let run = self.run_dir.clone();
        let source = pair_source(&self.config, self.grouping()?)?;
        let neg = &self.config.negatives;
        let mined = match neg.source {
            Source::None | Source::Dense => 0,
            _ => neg.count,
        };
        // Every rank makes the global batch and keeps its share, so N ranks
        // of batch B see exactly the pairs one process of batch N·B sees.
        let (rank, world) = (self.group.rank(), self.group.world_size());
        let lead = rank == 0;
        let stream_config = StreamConfig {
            seed: self.config.seed,
            batch_size: t.batch_size * world,
            shuffle_buffer: t.shuffle_buffer,
            hard_negatives: t.hard_negatives + mined,
            own_negatives: t.hard_negatives,
            skip_batches: self.step,
            rank,
            world,
            rules: self.config.batch,
        };
        let (pair_negatives, corpus_texts) = negatives_for(&self.config)?;
        if neg.source == Source::Dense {
            let texts = corpus_texts.context("dense negatives need the corpus")?;
            let ann = (neg.index == SearchIndex::Ann).then_some(neg.ann);
            let mut a = ance::Ance::new(texts, ann);
            if let Some((index, at)) = self.resumed_ance.take() {
                // The index the unbroken run had at this step, so the
                // resumed run draws the same negatives.
                a.restore(&index, at)?;
            }
            self.ance = Some(a);
        }
        let producer_stats = Arc::new(std::sync::Mutex::new(MiningStats::default()));
        let filtered = Arc::new(std::sync::Mutex::new(Filtered::default()));
        let mut stream = BatchStream::start(
            source,
            self.tokenizer.clone(),
            stream_config,
            pair_negatives.map(|n| (n, producer_stats.clone())),
            self.pair_filter(&filtered)?,
        )?;
        // Rank 0 writes metrics and checkpoints for the group.
        let mut log = metrics::MetricsFile::open(&run.metrics(rank), self.step)?;
        let abort_after = std::env::var("PRETEXT_ABORT_AFTER_STEP")
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        let mut last = None;
        let mut checkpoint_path = run.latest()?;
        let mut evaluator = match lead {
            true => Evaluator::new(
                &self.config.eval,
                eval_data(&self.config)?,
                &run.tokenizer(),
                self.config.model.lengths().map_err(anyhow::Error::msg)?,
                self.config.model.prompts(),
            )?,
            false => None,
        };
        let mut evaluated_at = None;
        if let Some(ev) = &mut evaluator {
            if let Ok(text) = std::fs::read_to_string(run.best_report()) {
                ev.best = serde_json::from_str(&text).ok();
            }
            if self.step == 0 {
                self.evaluate(ev, &mut log)?;
                evaluated_at = Some(0);
            }
        }
        while self.step < t.steps {
            let batch = stream.next_batch()?;
            let refresh = self.refresh_if_due()?;
            let mut entry = self.train_step(&batch)?;
            entry.refresh_seconds = refresh;
            log.write(&entry)?;
            progress.step(&entry);
            last = Some(entry);
            let mut stop = false;
            if let Some(ev) = evaluator.as_mut().filter(|ev| ev.due(self.step)) {
                // Before the checkpoint of the same step: a run killed in
                // between repeats this evaluation when it resumes.
                self.evaluate(ev, &mut log)?;
                evaluated_at = Some(self.step);
                stop = ev.out_of_patience();
            }
            if stop {
                eprintln!(
                    "stopping at step {}: eval.patience = {} evaluations without a better {}",
                    self.step, self.config.eval.patience, self.config.eval.metric
                );
                break;
            }
            if lead
                && t.checkpoint_every > 0
                && self.step.is_multiple_of(t.checkpoint_every)
                && self.step < t.steps
            {
                let p = self.save()?;
                progress.checkpoint(&p);
                checkpoint_path = Some(p);
            }
            if abort_after == Some(self.step) {
                // Test hook: die like a killed process, with no cleanup.
                std::process::abort();
            }
        }
        drop(stream);
        if let Some(ev) = evaluator.as_mut() {
            if evaluated_at != Some(self.step) {
                self.evaluate(ev, &mut log)?;
            }
        }
        let final_ckpt = match checkpoint_path.filter(|p| p == &run.checkpoint(self.step)) {
            Some(p) => p,
            None if lead => self.save()?,
            None => run.checkpoint(self.step),
        };
        progress.checkpoint(&final_ckpt);
        if lead && self.config.negatives.source != Source::None {
            // What mining saw: the producer's draws (random, gold, BM25;
            // batches generated ahead of the last step included) or the
            // dense refreshes'.
            let mut stats = std::mem::take(&mut *producer_stats.lock().expect("mining stats"));
            if let Some(a) = &self.ance {
                stats.merge(a.stats.clone());
            }
            crate::atomic::write(
                &run.negatives_report(),
                serde_json::to_string_pretty(&stats.to_json())? + "\n",
            )?;
        }
        if let Some(l) = self.ltre.as_ref().filter(|l| l.unplaced > 0) {
            eprintln!(
                "note: LTRe left {} pairs out of the loss: their source document is not in the index (a task that names none, or a skipped record)",
                l.unplaced
            );
        }
        metrics::plot(&run.metrics(0), &run.curves())?;
        let filtered = (t.filter.top_k > 0).then(|| *filtered.lock().expect("filter counts"));
        Ok(TrainReport {
            last,
            checkpoint: final_ckpt,
            run: run.root().to_path_buf(),
            best: evaluator.and_then(|ev| ev.best),
            filtered,
        })
    }

    /// The stream's consistency filter, when `train.filter` asks for one:
    /// its model (`train.filter.model`, else the init) loaded frozen on the
    /// training device, counting into `counts`.
    fn pair_filter(&self, counts: &Arc<std::sync::Mutex<Filtered>>) -> Result<Option<PairFilter>> {
        let f = &self.config.train.filter;
        if f.top_k == 0 {
            return Ok(None);
        }
        let dir = f
            .model
            .as_ref()
            .or(self.config.model.init.as_ref())
            .context("train.filter needs train.filter.model or model.init")?;
        let model = Pretrained::load(dir, &self.device, Some(self.config.model.max_len))
            .with_context(|| format!("train.filter model {}", dir.display()))?;
        Ok(Some(PairFilter {
            model,
            top_k: f.top_k,
            pool: f.pool,
            counts: counts.clone(),
        }))
    }

    /// Scores the current towers on the eval set, logs the row, and keeps
    /// the checkpoint in `best/` when it is the best so far.
    fn evaluate(&mut self, ev: &mut Evaluator, log: &mut metrics::MetricsFile) -> Result<()> {
        let scores = ev.score(
            self.model.query(),
            self.model.doc(),
            &self.device,
            self.config.model.similarity,
        )?;
        log.write_eval(self.step, &scores)?;
        let value = scores.get(ev.metric()).copied().unwrap_or(f64::NAN);
        if ev.record(self.step, value) {
            self.save_best()?;
        }
        if let Some(best) = &ev.best {
            crate::atomic::write(
                &self.run_dir.best_report(),
                serde_json::to_string_pretty(best)? + "\n",
            )?;
        }
        Ok(())
    }

    /// Re-encodes the corpus for dense negatives when a refresh is due.
    fn refresh_if_due(&mut self) -> Result<Option<f64>> {
        if self.config.train.mode == TrainMode::Ltre {
            return self.build_ltre_index();
        }
        let every = self.config.negatives.refresh_every;
        let Some(a) = &mut self.ance else {
            return Ok(None);
        };
        if !a.due(self.step, every) {
            return Ok(None);
        }
        let tower = match (&self.key, self.config.negatives.refresh_encoder) {
            (Some(k), RefreshEncoder::Momentum) => &k.tower,
            _ => self.model.doc(),
        };
        let secs = a.refresh(
            tower,
            &self.tokenizer,
            &self.device,
            self.config.model.similarity,
            (self.config.train.batch_size * 2).max(16),
            self.step,
        )?;
        Ok(Some(secs))
    }
}

impl Trainer {
    /// LTRe's index, encoded once by the (frozen) document tower when the
    /// run starts or resumes (the tower is the init's, so a resumed run
    /// builds the same index); its seconds are logged as the first step's
    /// refresh.
    fn build_ltre_index(&mut self) -> Result<Option<f64>> {
        if self.ltre.is_some() {
            return Ok(None);
        }
        let c = &self.config.corpus;
        let read = ReadOptions {
            skip_bad: c.skip_bad,
            ..ReadOptions::default()
        };
        let texts = Arc::new(CorpusTexts::load(&c.open()?, read)?);
        let started = Instant::now();
        let e = ance::encode_corpus(
            self.model.doc(),
            &self.tokenizer,
            &self.device,
            self.config.model.similarity,
            &texts,
            (self.config.train.batch_size * 2).max(16),
        )?;
        let secs = started.elapsed().as_secs_f64();
        let index = ltre::LtreIndex::new(texts, &e, secs)?;
        self.ltre = Some(match self.config.train.ltre.teacher.needs_lexical() {
            true => index.with_lexical(),
            false => index,
        });
        Ok(Some(secs))
    }
}

/// The last step a run logged in its `metrics.jsonl`, if any (eval rows
/// skipped).
pub fn last_logged_step(run: &Path) -> Option<StepLog> {
    let text = std::fs::read_to_string(super::RunDir::new(run).metrics(0)).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}
