//! Variables of a trainable model: deterministic initialisation, loading
//! Hugging Face `model.safetensors` into them, and saving them back.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Gives every variable its initial value from `seed` alone: BERT's
/// N(0, 0.02) for weights and embeddings, ones and zeros for layer norms
/// and biases. (candle's own initialisers draw from an unseeded generator.)
pub fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let values: Vec<f32> = if name.ends_with("LayerNorm.weight") {
            vec![1.0; n]
        } else if name.ends_with("bias") {
            vec![0.0; n]
        } else {
            let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed ^ fnv1a(name));
            let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// Whether `name` is a tower's position embedding table.
pub fn is_position_table(name: &str) -> bool {
    name.ends_with("embeddings.position_embeddings.weight")
}

/// Sets every position table to zero (`model.positions = false`).
pub fn zero_positions(varmap: &VarMap) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        if is_position_table(name) {
            var.set(&var.as_tensor().zeros_like()?)?;
        }
    }
    Ok(())
}

/// Loads a Hugging Face checkpoint into the variables whose names start
/// with `prefix` (`""` for the query tower, `"doc."` for a separate
/// document tower). Checkpoint keys may carry a `bert.` prefix. Every
/// variable must be found with the right shape; extra keys (pooler,
/// `position_ids`) are ignored.
pub fn load_hf(varmap: &VarMap, path: &Path, prefix: &str) -> Result<usize> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
    let data = varmap.data().lock().expect("varmap lock");
    let mut loaded = 0;
    let mut missing = Vec::new();
    for (name, var) in data.iter() {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        if prefix.is_empty() && name.starts_with("doc.") {
            continue;
        }
        if key.starts_with("head.") || key.starts_with("pooling.") {
            // A projection head and pooling weights are ours: never in an
            // HF encoder checkpoint (pooling weights start from the corpus
            // or the folder's WordWeights module).
            continue;
        }
        let Some(t) = tensors
            .get(key)
            .or_else(|| tensors.get(&format!("bert.{key}")))
        else {
            missing.push(key.to_string());
            continue;
        };
        if t.shape() != var.shape() {
            candle_core::bail!(
                "{}: tensor `{key}` has shape {:?}, the model expects {:?}",
                path.display(),
                t.dims(),
                var.dims()
            );
        }
        var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
        loaded += 1;
    }
    if !missing.is_empty() {
        missing.sort();
        candle_core::bail!(
            "{}: {} tensors the model needs are missing, e.g. {}",
            path.display(),
            missing.len(),
            missing[..missing.len().min(3)].join(", ")
        );
    }
    Ok(loaded)
}

/// Every variable, by name.
pub fn all_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// The variables whose names start with `prefix`, renamed without it.
pub fn tensors_with_prefix(varmap: &VarMap, prefix: &str) -> HashMap<String, Tensor> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .filter_map(|(name, var)| {
            let key = name.strip_prefix(prefix)?;
            (!prefix.is_empty() || !name.starts_with("doc."))
                .then(|| (key.to_string(), var.as_tensor().clone()))
        })
        .collect()
}

/// FNV-1a of a name: a hash fixed by its definition, so initial weights do
/// not change with the Rust version.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
