//! MoCo's key encoder (He et al., 2020; Contriever's default): a momentum
//! copy of the document tower that encodes the keys the queue
//! ([`crate::queue`]) holds. It gets no gradient; before each key pass it
//! moves towards the trained weights, `k = m·k + (1 − m)·q`.
//!
//! With shared towers the key encoder follows that one tower and encodes
//! the batch's positives too (Contriever). With separate towers it follows
//! the document tower, which is trained on the in-batch positives it encodes
//! itself (with gradient); the key encoder then only encodes the keys that
//! go into the queue, so both towers learn.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::model::kernels::update::lerp;
use crate::model::{BertConfig, Head, Tower};

/// A momentum copy of the document tower.
pub struct KeyEncoder {
    /// The tower that encodes keys (no gradient).
    pub tower: Tower,
    /// Its variables, saved in checkpoints as `key.safetensors`.
    pub varmap: VarMap,
    /// (key variable, source variable) pairs, for the momentum update.
    links: Vec<(Var, Var)>,
    /// Whether it follows a tower of its own (`doc.*`) rather than the
    /// shared one: then positives are encoded by the trained tower.
    separate: bool,
}

impl KeyEncoder {
    /// A copy of the document tower of `model_vars`: the shared tower, or
    /// the variables under `doc.` when the towers are separate.
    pub fn new(
        model_vars: &VarMap,
        bert: &BertConfig,
        head: Head,
        shared: bool,
        dev: &Device,
    ) -> Result<KeyEncoder> {
        let varmap = VarMap::new();
        let tower = Tower::new(
            bert,
            head,
            VarBuilder::from_varmap(&varmap, DType::F32, dev),
        )?;
        let src = model_vars.data().lock().expect("varmap");
        let mut links = Vec::new();
        let keys = varmap.data().lock().expect("varmap");
        let mut names: Vec<&String> = keys.keys().collect();
        names.sort();
        for name in names {
            let source = if shared {
                name.clone()
            } else {
                format!("doc.{name}")
            };
            let s = src
                .get(&source)
                .ok_or_else(|| anyhow!("key encoder: no variable `{source}`"))?;
            let k = &keys[name];
            k.set(s.as_tensor())?;
            links.push((k.clone(), s.clone()));
        }
        drop(keys);
        Ok(KeyEncoder {
            tower,
            varmap,
            links,
            separate: !shared,
        })
    }

    /// Whether the batch's positives are encoded by the trained document
    /// tower (separate towers) rather than by this encoder.
    pub fn follows_separate_tower(&self) -> bool {
        self.separate
    }

    /// `k = m·k + (1 − m)·q`, before the keys are encoded (MoCo).
    pub fn update(&self, m: f64) -> Result<()> {
        for (k, q) in &self.links {
            lerp(k, q.as_tensor(), m)?;
        }
        Ok(())
    }
}
