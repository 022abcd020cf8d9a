//! The BERT configuration, read from and written to Hugging Face's
//! `config.json`, plus size presets for runs from scratch.

use serde::{Deserialize, Serialize};

/// A BERT-family encoder's shape (Hugging Face `config.json` names).
///
/// Unknown fields are accepted on purpose: Hugging Face configs carry many
/// fields (`architectures`, `torch_dtype`, …) this encoder does not use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of every layer.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`hidden_size` must divide by it).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation: `gelu` (erf form, as BERT) is the only one supported.
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// Dropout on embeddings and sub-layer outputs.
    #[serde(default = "dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Longest input in tokens.
    pub max_position_embeddings: usize,
    /// Segment types (2 in BERT; only type 0 is used).
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Standard deviation of the initial weights.
    #[serde(default = "init_range")]
    pub initializer_range: f64,
    /// Always `bert`.
    #[serde(default = "bert")]
    pub model_type: String,
}

fn init_range() -> f64 {
    0.02
}

fn gelu() -> String {
    "gelu".into()
}
fn dropout() -> f64 {
    0.1
}
fn two() -> usize {
    2
}
fn eps() -> f64 {
    1e-12
}
fn bert() -> String {
    "bert".into()
}

impl BertConfig {
    /// A preset by name: `tiny` (2 layers × 128), `mini` (4 × 256), `small`
    /// (4 × 512), `base` (12 × 768, BERT-base).
    pub fn preset(name: &str, vocab_size: usize) -> Option<BertConfig> {
        let (layers, hidden, heads) = match name {
            "tiny" => (2, 128, 2),
            "mini" => (4, 256, 4),
            "small" => (4, 512, 8),
            "base" => (12, 768, 12),
            _ => return None,
        };
        Some(BertConfig {
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: hidden * 4,
            hidden_act: gelu(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            initializer_range: init_range(),
            model_type: bert(),
        })
    }

    /// Names accepted by [`BertConfig::preset`].
    pub const PRESETS: [&'static str; 4] = ["tiny", "mini", "small", "base"];

    /// Checks what the encoder relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !matches!(
            self.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_python"
        ) {
            return Err(format!(
                "hidden_act `{}` is not supported (gelu only)",
                self.hidden_act
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} = {p} is not in [0, 1)"));
            }
        }
        Ok(())
    }

    /// The `config.json` Hugging Face transformers expects.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("plain struct");
        v["architectures"] = serde_json::json!(["BertModel"]);
        v["position_embedding_type"] = "absolute".into();
        v["torch_dtype"] = "float32".into();
        v
    }
}
