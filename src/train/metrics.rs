//! Per-step metrics: a JSONL file a run appends to (and a resumed run
//! continues), and the loss/accuracy curves drawn from it as SVG.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Tensor, D};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// What one step logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// Steps completed.
    pub step: usize,
    /// Loss.
    pub loss: f32,
    /// Pretext accuracy: share of queries whose positive ranks first.
    pub accuracy: f32,
    /// Learning rate of the step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Mean L2 norm of the query embeddings.
    pub embedding_norm: f32,
    /// Mean over dimensions of the batch standard deviation (near 0: collapse).
    pub embedding_std: f32,
    /// Share of the queue filled.
    pub queue_fill: f64,
    /// Real tokens in the batch (queries and positives).
    pub tokens: usize,
    /// Wall time of the step.
    pub seconds: f64,
    /// Seconds spent re-encoding the corpus for dense negatives before
    /// this step (ANCE refresh), when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_seconds: Option<f64>,
}

/// Mean row norm and mean per-dimension standard deviation of `(b, d)`.
pub fn norm_and_std(x: &Tensor) -> Result<(f32, f32)> {
    let norm = x
        .sqr()?
        .sum(D::Minus1)?
        .sqrt()?
        .mean_all()?
        .to_scalar::<f32>()?;
    let mean = x.mean_keepdim(0)?;
    let std = x
        .broadcast_sub(&mean)?
        .sqr()?
        .mean(0)?
        .sqrt()?
        .mean_all()?
        .to_scalar::<f32>()?;
    Ok((norm, std))
}

/// The metrics file of a run.
pub struct MetricsFile {
    file: std::io::BufWriter<std::fs::File>,
}

impl MetricsFile {
    /// Opens `path`, keeping the lines of steps up to `from_step` (a resumed
    /// run drops what the killed run logged after its last checkpoint).
    pub fn open(path: &Path, from_step: usize) -> Result<MetricsFile> {
        // Step rows and eval rows alike carry their step.
        let step_of = |l: &str| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
        };
        let kept: Vec<String> = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .filter(|l| step_of(l).is_some_and(|s| s as usize <= from_step))
                .map(String::from)
                .collect(),
            Err(_) => Vec::new(),
        };
        // The kept lines replace the file atomically (a crash here loses
        // nothing), then new lines are appended.
        let mut text = String::new();
        for l in kept {
            text.push_str(&l);
            text.push('\n');
        }
        crate::atomic::write(path, text)?;
        let file = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        );
        Ok(MetricsFile { file })
    }

    /// Appends an evaluation: `{"step", "eval": {metric: value, ...}}`.
    pub fn write_eval(
        &mut self,
        step: usize,
        metrics: &std::collections::BTreeMap<String, f64>,
    ) -> Result<()> {
        serde_json::to_writer(
            &mut self.file,
            &serde_json::json!({"step": step, "eval": metrics}),
        )?;
        writeln!(self.file)?;
        self.file.flush()?;
        Ok(())
    }

    /// Appends a step.
    pub fn write(&mut self, log: &StepLog) -> Result<()> {
        serde_json::to_writer(&mut self.file, log)?;
        writeln!(self.file)?;
        self.file.flush()?;
        Ok(())
    }
}

/// Draws loss and accuracy against steps from a metrics file into an SVG.
pub fn plot(metrics: &Path, out: &Path) -> Result<()> {
    crate::plot::register_fonts();
    let text = std::fs::read_to_string(metrics)?;
    let logs: Vec<StepLog> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // Eval rows: the first metric of each (nDCG@10 when reported).
    let evals: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let e = v.get("eval")?;
            let y = e
                .get("nDCG@10")
                .or_else(|| e.as_object()?.values().next())?;
            Some((v["step"].as_f64()?, y.as_f64()?))
        })
        .collect();
    if logs.is_empty() {
        return Ok(());
    }
    // Drawn beside `out` and renamed into place.
    crate::atomic::write_with(out, |tmp| draw_curves(tmp, &logs, &evals))
}

fn draw_curves(out: &Path, logs: &[StepLog], evals: &[(f64, f64)]) -> Result<()> {
    let root = SVGBackend::new(out, (900, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(450);
    let max_step = logs.last().map_or(1, |l| l.step).max(1) as f64;
    let max_loss = logs
        .iter()
        .map(|l| l.loss as f64)
        .fold(0.0, f64::max)
        .max(1e-3);
    let draw = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                title: &str,
                top: f64,
                ys: Vec<(f64, f64)>,
                extra: &[(f64, f64)]|
     -> Result<()> {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..max_step, 0f64..top)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(ys, &BLUE))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !extra.is_empty() {
            chart
                .draw_series(LineSeries::new(extra.iter().copied(), &RED))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    };
    draw(
        &left,
        "loss",
        max_loss * 1.05,
        logs.iter()
            .map(|l| (l.step as f64, l.loss as f64))
            .collect(),
        &[],
    )?;
    let title = if evals.is_empty() {
        "pretext accuracy"
    } else {
        "pretext accuracy (blue), eval nDCG@10 (red)"
    };
    draw(
        &right,
        title,
        1.0,
        logs.iter()
            .map(|l| (l.step as f64, l.accuracy as f64))
            .collect(),
        evals,
    )?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
