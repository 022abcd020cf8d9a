//! A BERT encoder with Hugging Face tensor names, so `model.safetensors`
//! checkpoints load and save as they are, and every weight is trainable.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::config::BertConfig;
use super::kernels;
use super::kernels::int8::{Activation, Int8Linear};
use super::layers::{attention_bias, embedding, linear, LayerNorm, Mode};

/// Word, position and segment embeddings, then layer norm.
#[derive(Debug, Clone)]
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    dropout: f64,
}

impl Embeddings {
    fn new(c: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Embeddings {
            word: embedding(c.vocab_size, c.hidden_size, vb.pp("word_embeddings"))?,
            position: embedding(
                c.max_position_embeddings,
                c.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: embedding(
                c.type_vocab_size,
                c.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: LayerNorm::new(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
            dropout: c.hidden_dropout_prob,
        })
    }

    /// `(batch, seq)` ids (and segment types, all 0 when `None`) →
    /// `(batch, seq, hidden)`.
    fn forward(&self, ids: &Tensor, types: Option<&Tensor>, mode: Mode) -> Result<Tensor> {
        let (_, seq) = ids.dims2()?;
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let x = match types {
            // A text alone is segment 0 everywhere: one row broadcast.
            None => x.broadcast_add(&self.token_type.forward(&positions.zeros_like()?)?)?,
            // A cross-encoder's pair: the first text is segment 0, the
            // second segment 1.
            Some(t) => (x + self.token_type.forward(t)?)?,
        };
        mode.dropout(&self.norm.forward(&x)?, self.dropout)
    }
}

/// Multi-head self-attention with its output projection and residual norm.
#[derive(Debug, Clone)]
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    norm: LayerNorm,
    heads: usize,
    attn_dropout: f64,
    dropout: f64,
}

impl Attention {
    fn new(c: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = c.hidden_size;
        let sa = vb.pp("self");
        Ok(Attention {
            query: linear(h, h, sa.pp("query"))?,
            key: linear(h, h, sa.pp("key"))?,
            value: linear(h, h, sa.pp("value"))?,
            output: linear(h, h, vb.pp("output").pp("dense"))?,
            norm: LayerNorm::new(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: c.num_attention_heads,
            attn_dropout: c.attention_probs_dropout_prob,
            dropout: c.hidden_dropout_prob,
        })
    }

    /// The three projections as one `(3·hidden, hidden)` weight and its
    /// bias: one product, whose input is packed once and whose wider output
    /// the matmul kernel runs faster.
    fn qkv(&self) -> Result<(Tensor, Option<Tensor>)> {
        let (q, k, v) = (&self.query, &self.key, &self.value);
        let weight = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
        let bias = match (q.bias(), k.bias(), v.bias()) {
            (Some(a), Some(b), Some(c)) => Some(Tensor::cat(&[a, b, c], 0)?),
            _ => None,
        };
        Ok((weight, bias))
    }

    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        mode: Mode,
        q: Option<&Int8Layer>,
    ) -> Result<Tensor> {
        let qkv = match q {
            Some(q) => q.qkv.forward(x, Activation::Identity)?,
            None => {
                let (weight, b) = self.qkv()?;
                kernels::linear(x, &weight, b.as_ref())?
            }
        };
        let ctx = kernels::attention(&qkv, bias, self.heads, mode, self.attn_dropout)?;
        match q {
            Some(q) => {
                let y = q.attention_output.forward(&ctx, Activation::Identity)?;
                self.norm
                    .after_dense(y, self.output.bias(), x, mode, self.dropout)
            }
            None => self
                .norm
                .dense_residual(&self.output, &ctx, x, mode, self.dropout),
        }
    }
}

/// One layer's dense weights in int8 ([`Bert::quantize`]). The dense
/// layers that a residual norm follows leave their bias to it.
#[derive(Debug)]
struct Int8Layer {
    qkv: Int8Linear,
    attention_output: Int8Linear,
    intermediate: Int8Linear,
    output: Int8Linear,
}

impl Int8Layer {
    fn new(layer: &Layer) -> Result<Int8Layer> {
        let (qkv, qkv_bias) = layer.attention.qkv()?;
        Ok(Int8Layer {
            qkv: Int8Linear::new(&qkv, qkv_bias.as_ref())?,
            attention_output: Int8Linear::new(layer.attention.output.weight(), None)?,
            intermediate: Int8Linear::new(layer.intermediate.weight(), layer.intermediate.bias())?,
            output: Int8Linear::new(layer.output.weight(), None)?,
        })
    }
}

/// One transformer layer: attention, then the feed-forward block.
#[derive(Debug, Clone)]
struct Layer {
    attention: Attention,
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
    dropout: f64,
}

impl Layer {
    fn new(c: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Layer {
            attention: Attention::new(c, vb.pp("attention"))?,
            intermediate: linear(
                c.hidden_size,
                c.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: linear(
                c.intermediate_size,
                c.hidden_size,
                vb.pp("output").pp("dense"),
            )?,
            norm: LayerNorm::new(
                c.hidden_size,
                c.layer_norm_eps,
                vb.pp("output").pp("LayerNorm"),
            )?,
            dropout: c.hidden_dropout_prob,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        mode: Mode,
        q: Option<&Int8Layer>,
    ) -> Result<Tensor> {
        let a = self.attention.forward(x, bias, mode, q)?;
        match q {
            Some(q) => {
                let ff = q.intermediate.forward(&a, Activation::Gelu)?;
                let y = q.output.forward(&ff, Activation::Identity)?;
                self.norm
                    .after_dense(y, self.output.bias(), &a, mode, self.dropout)
            }
            None => {
                let ff = dense_gelu(&self.intermediate, &a, mode)?;
                self.norm
                    .dense_residual(&self.output, &ff, &a, mode, self.dropout)
            }
        }
    }
}

/// `gelu(x·Wᵀ + b)`. Training keeps the product for the backward pass
/// (bias and GELU fused after it); without gradients the GELU runs in place
/// on the product.
fn dense_gelu(layer: &Linear, x: &Tensor, mode: Mode) -> Result<Tensor> {
    match (layer.bias(), mode) {
        (Some(bias), Mode::Eval) => kernels::dense_gelu(x, layer.weight(), bias),
        (Some(bias), Mode::Train(_)) => {
            kernels::bias_gelu(&kernels::linear(x, layer.weight(), None)?, bias)
        }
        (None, _) => kernels::linear(x, layer.weight(), None)?.gelu_erf(),
    }
}

/// The BERT encoder (no pooler: retrievers pool themselves).
#[derive(Debug, Clone)]
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    config: BertConfig,
    /// Where the backward pass stops: the states after the embeddings
    /// (`Some(0)`) or after layer `n - 1` (`Some(n)`) are detached, so
    /// nothing below is differentiated.
    detach_after: Option<usize>,
    /// The layers' dense weights in int8, used by passes without
    /// gradients once [`Bert::quantize`] made them.
    int8: Option<std::sync::Arc<[Int8Layer]>>,
}

/// What of a BERT is frozen (`train.freeze`): its embeddings, its lowest
/// `layers` layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Freeze {
    /// The embedding tables and their layer norm.
    pub embeddings: bool,
    /// The lowest this many transformer layers.
    pub layers: usize,
}

impl Freeze {
    /// Whether the variable `name` (HF name, after any tower prefix) is
    /// frozen.
    pub fn covers(&self, name: &str) -> bool {
        if self.embeddings && name.starts_with("embeddings.") {
            return true;
        }
        name.strip_prefix("encoder.layer.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < self.layers)
    }
}

impl Bert {
    /// Builds the encoder from `vb` (HF names: `embeddings.*`, `encoder.layer.N.*`).
    pub fn new(config: &BertConfig, vb: VarBuilder) -> Result<Bert> {
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::new(config, vb.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            embeddings: Embeddings::new(config, vb.pp("embeddings"))?,
            layers,
            config: config.clone(),
            detach_after: None,
            int8: None,
        })
    }

    /// Quantises the dense layers' weights to int8 for inference (what
    /// `--int8` does): passes without gradients ([`Mode::Eval`]) then run
    /// them as 8-bit products ([`kernels::int8`]); training passes keep
    /// the f32 weights, and a later change to those weights is not seen
    /// by the int8 copy. CPU and f32 only.
    pub fn quantize(&mut self) -> Result<()> {
        let w = self.embeddings.word.embeddings();
        if !kernels::fused_for(w) {
            candle_core::bail!(
                "int8 inference runs on the CPU in f32 (this model is on {:?} in {:?})",
                w.device(),
                w.dtype()
            );
        }
        let layers = self
            .layers
            .iter()
            .map(Int8Layer::new)
            .collect::<Result<Vec<_>>>()?;
        self.int8 = Some(layers.into());
        Ok(())
    }

    /// Stops the backward pass below the frozen part: when the embeddings
    /// and the lowest `layers` layers are all frozen, their output is
    /// detached, so they get no backward pass at all (a frozen layer above
    /// trainable embeddings is still passed through, and only kept out of
    /// the optimizer).
    pub fn freeze(&mut self, f: Freeze) {
        self.detach_after = f.embeddings.then_some(f.layers.min(self.layers.len()));
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// `(batch, seq)` ids and 0/1 mask → `(batch, seq, hidden)` states.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_segments(ids, None, mask, mode)
    }

    /// [`Bert::forward`] with segment types (`token_type_ids`, `(batch,
    /// seq)`), as a cross-encoder reads a query and a passage in one input.
    pub fn forward_segments(
        &self,
        ids: &Tensor,
        types: Option<&Tensor>,
        mask: &Tensor,
        mode: Mode,
    ) -> Result<Tensor> {
        let bias = attention_bias(mask, candle_core::DType::F32)?;
        let mut x = self.embeddings.forward(ids, types, mode)?;
        if self.detach_after == Some(0) {
            x = x.detach();
        }
        let int8 = match mode {
            Mode::Eval => self.int8.as_deref(),
            Mode::Train(_) => None,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &bias, mode, int8.map(|q| &q[i]))?;
            if self.detach_after == Some(i + 1) {
                x = x.detach();
            }
        }
        Ok(x)
    }
}

/// Mean of the states of real (unmasked) tokens: `(batch, hidden)`.
pub fn mean_pool(states: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?;
    let sum = states.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    sum.broadcast_div(&count)
}
