//! AdamW with decoupled weight decay (Loshchilov & Hutter, 2019), global
//! gradient-norm clipping, and BERT's schedule: linear warm-up, then linear
//! decay to zero. Written here rather than taken from candle-nn because its
//! moments must be saved in checkpoints, which candle-nn's keeps private.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::model::kernels::update::{self, AdamWStep};

/// AdamW settings.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (not applied to biases and layer norms).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Param {
    name: String,
    var: Var,
    m: Var,
    v: Var,
    decay: bool,
}

/// The optimizer and its state.
pub struct AdamW {
    params: Vec<Param>,
    step: usize,
    config: AdamWConfig,
}

impl AdamW {
    /// Optimizes `vars` (sorted by name, so state files line up).
    pub fn new(mut vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<AdamW> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = || Var::zeros(var.shape(), var.dtype(), var.device());
                let decay = !(name.ends_with("bias") || name.contains("LayerNorm"));
                Ok(Param {
                    m: zeros()?,
                    v: zeros()?,
                    name,
                    var,
                    decay,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            params,
            step: 0,
            config,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Global L2 norm of the gradients; errors if a parameter got none.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0f64;
        for p in &self.params {
            let g = grads
                .get(p.var.as_tensor())
                .ok_or_else(|| candle_core::Error::Msg(format!("no gradient for `{}`", p.name)))?;
            total += update::sum_squares(g)?;
        }
        Ok(total.sqrt())
    }

    /// One update with learning rate `lr`, gradients scaled by `scale`
    /// (the clipping factor).
    pub fn step(&mut self, grads: &GradStore, lr: f64, scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for p in &self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let decay = match p.decay {
                true => 1.0 - lr * c.weight_decay,
                false => 1.0,
            };
            let step = AdamWStep {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                lr,
                bc1,
                bc2,
                decay,
                scale,
            };
            update::adamw(&p.var, &p.m, &p.v, g, &step)?;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`), for checkpoints.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for p in &self.params {
            out.insert(format!("m.{}", p.name), p.m.as_tensor().clone());
            out.insert(format!("v.{}", p.name), p.v.as_tensor().clone());
        }
        out
    }

    /// Restores moments and the step count.
    pub fn restore(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for p in &self.params {
            for (prefix, var) in [("m", &p.m), ("v", &p.v)] {
                let key = format!("{prefix}.{}", p.name);
                let t = state.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state lacks `{key}`"))
                })?;
                var.set(&t.to_device(var.device())?)?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Clipping factor for a gradient norm: `min(1, max_norm / norm)`.
pub fn clip_scale(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(max) if norm > max => max / (norm + 1e-6),
        _ => 1.0,
    }
}

/// Linear warm-up to `peak` over `warmup` steps, then linear decay to 0 at
/// `total` (step counts from 1).
pub fn learning_rate(step: usize, peak: f64, warmup: usize, total: usize) -> f64 {
    if warmup > 0 && step <= warmup {
        return peak * step as f64 / warmup as f64;
    }
    let left = total.saturating_sub(step) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    peak * (left / span).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_and_clipping() {
        assert_eq!(learning_rate(5, 1.0, 10, 110), 0.5);
        assert_eq!(learning_rate(10, 1.0, 10, 110), 1.0);
        assert!((learning_rate(60, 1.0, 10, 110) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(110, 1.0, 10, 110), 0.0);
        assert_eq!(clip_scale(0.5, Some(1.0)), 1.0);
        assert!((clip_scale(4.0, Some(1.0)) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn adamw_minimises_a_quadratic() {
        let x = Var::new(&[3.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(
            vec![("w.weight".into(), x.clone())],
            AdamWConfig {
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..500 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.05, 1.0).unwrap();
        }
        let v: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        let state = opt.state();
        let mut other =
            AdamW::new(vec![("w.weight".into(), x.clone())], AdamWConfig::default()).unwrap();
        other.restore(&state, 500).unwrap();
        assert_eq!(other.steps(), 500);
    }
}
