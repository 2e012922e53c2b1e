//! Reading a Hugging Face `config.json` into core's architecture
//! description ([`ArchSpec`]), for `arenalm plan --config`.
//!
//! Keys are looked up in `text_config` first (Gemma 3 and other multimodal
//! configs nest the language model there), then at the top level; `null`
//! counts as absent. Every error names the key (with its `text_config.`
//! path when it came from there). See the README for the keys read.

use arenalm_core::mem::arch::{ArchSpec, Mla, Moe, SlidingWindow};
use arenalm_core::Error;
use serde_json::{Map, Value};

/// An architecture family: what its configs leave implicit.
struct Family {
    /// `model_type` values.
    names: &'static [&'static str],
    /// Norms of `hidden_size` per block.
    norms_per_layer: u32,
    /// Whether q, k and v have biases.
    qkv_bias: bool,
    /// Whether q and k have norms of `head_dim`.
    qk_norm: bool,
    /// `tie_word_embeddings` when the config leaves it out.
    tied_default: bool,
    /// Which layers slide when the config has a window but no layer list.
    sliding: Sliding,
}

/// Which layers use the sliding window by default.
#[derive(Clone, Copy)]
enum Sliding {
    /// Every layer (Mistral).
    All,
    /// All but every `n`-th layer (Gemma 3: 5 local, then 1 global).
    Pattern(u32),
    /// Layers from `max_window_layers` on (Qwen2 with `use_sliding_window`).
    FromMaxWindowLayers,
}

const FAMILIES: &[Family] = &[
    Family {
        names: &["llama", "mistral", "mixtral", "deepseek_v2", "deepseek_v3"],
        norms_per_layer: 2,
        qkv_bias: false,
        qk_norm: false,
        tied_default: false,
        sliding: Sliding::All,
    },
    Family {
        names: &["qwen2"],
        norms_per_layer: 2,
        qkv_bias: true,
        qk_norm: false,
        tied_default: false,
        sliding: Sliding::FromMaxWindowLayers,
    },
    Family {
        names: &["qwen3", "qwen3_moe"],
        norms_per_layer: 2,
        qkv_bias: false,
        qk_norm: true,
        tied_default: false,
        sliding: Sliding::FromMaxWindowLayers,
    },
    Family {
        names: &["gemma3", "gemma3_text"],
        norms_per_layer: 4,
        qkv_bias: false,
        qk_norm: true,
        tied_default: true,
        sliding: Sliding::Pattern(6),
    },
];

/// A config read and checked.
#[derive(Debug)]
pub struct Config {
    /// `model_type` (of `text_config` when nested).
    pub model_type: String,
    /// The architecture.
    pub arch: ArchSpec,
    /// `max_position_embeddings`, if given.
    pub ctx_train: Option<u32>,
    /// Which key each field of [`ArchSpec`] came from (for error messages).
    keys: Vec<(&'static str, String)>,
}

impl Config {
    /// The config key a field of [`ArchSpec`] was read from.
    pub fn key_of(&self, field: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, k)| k.as_str())
    }

    /// A core error about the architecture, with the config key named.
    pub fn explain(&self, e: &Error) -> String {
        match e {
            Error::OutOfRange {
                what,
                value,
                min,
                max,
            } => match self.key_of(what) {
                Some(key) => {
                    format!("{key} = {value} is out of range (accepted: {min} to {max})")
                }
                None => e.to_string(),
            },
            _ => e.to_string(),
        }
    }
}

/// Key lookups over `text_config` and the top level.
struct Keys<'v> {
    text: Option<&'v Map<String, Value>>,
    top: &'v Map<String, Value>,
}

impl<'v> Keys<'v> {
    /// The value of `key` and its path, if present and not null.
    fn get(&self, key: &str) -> Option<(&'v Value, String)> {
        if let Some(v) = self.text.and_then(|t| t.get(key)).filter(|v| !v.is_null()) {
            return Some((v, format!("text_config.{key}")));
        }
        self.top
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| (v, key.to_string()))
    }

    /// Where a missing key was looked for.
    fn missing(&self, key: &str) -> String {
        match self.text {
            Some(_) => format!("missing key `{key}` (looked in text_config and at the top level)"),
            None => format!("missing key `{key}`"),
        }
    }

    fn u32(&self, key: &str) -> Result<Option<(u32, String)>, String> {
        let Some((v, path)) = self.get(key) else {
            return Ok(None);
        };
        let n = v
            .as_u64()
            .ok_or_else(|| format!("`{path}` must be a non-negative integer, got {v}"))?;
        let n = u32::try_from(n).map_err(|_| format!("`{path}` = {n} is too large"))?;
        Ok(Some((n, path)))
    }

    fn req(&self, key: &str) -> Result<(u32, String), String> {
        self.u32(key)?.ok_or_else(|| self.missing(key))
    }

    /// A required count that must be at least 1.
    fn positive(&self, key: &str) -> Result<(u32, String), String> {
        let (n, path) = self.req(key)?;
        if n == 0 {
            return Err(format!("`{path}` must be at least 1"));
        }
        Ok((n, path))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some((v, path)) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| format!("`{path}` must be true or false, got {v}")),
        }
    }

    fn str(&self, key: &str) -> Result<Option<(&'v str, String)>, String> {
        match self.get(key) {
            None => Ok(None),
            Some((v, path)) => v
                .as_str()
                .map(|s| Some((s, path.clone())))
                .ok_or_else(|| format!("`{path}` must be a string, got {v}")),
        }
    }
}

/// Reads a `config.json` text (see the module doc).
pub fn parse(text: &str) -> Result<Config, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let top = root
        .as_object()
        .ok_or("not a JSON object (a config.json is one)")?;
    let text_config = match top.get("text_config") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => return Err(format!("`text_config` must be an object, got {other}")),
    };
    let k = Keys {
        text: text_config,
        top,
    };
    let mut keys: Vec<(&'static str, String)> = Vec::new();

    let (model_type, type_path) = k
        .str("model_type")?
        .ok_or_else(|| k.missing("model_type"))?;
    let family = FAMILIES
        .iter()
        .find(|f| f.names.contains(&model_type))
        .ok_or_else(|| {
            let known: Vec<&str> = FAMILIES.iter().flat_map(|f| f.names.iter().copied()).collect();
            format!(
                "`{type_path}` = {model_type:?} is not an architecture arenalm can size (known: {})",
                known.join(", ")
            )
        })?;

    let mut field = |f: &'static str, (v, path): (u32, String)| {
        keys.push((f, path));
        v
    };
    let n_layers = field("n_layers", k.positive("num_hidden_layers")?);
    let dim = field("dim", k.positive("hidden_size")?);
    let n_heads = field("n_heads", k.positive("num_attention_heads")?);
    let vocab = field("vocab", k.positive("vocab_size")?);
    let ffn_dim = match k.u32("intermediate_size")? {
        Some(v) => field("ffn_dim", v),
        None => 0,
    };

    // Multi-head latent attention (DeepSeek).
    let mla = match k.u32("kv_lora_rank")? {
        None => None,
        Some(rank) => Some(Mla {
            kv_lora_rank: field("kv_lora_rank", rank),
            q_lora_rank: match k.u32("q_lora_rank")? {
                Some(v) => field("q_lora_rank", v),
                None => 0,
            },
            qk_nope_head_dim: field("qk_nope_head_dim", k.req("qk_nope_head_dim")?),
            qk_rope_head_dim: field("qk_rope_head_dim", k.positive("qk_rope_head_dim")?),
            v_head_dim: field("v_head_dim", k.positive("v_head_dim")?),
        }),
    };

    // Grouped-query attention: KV heads and the head size.
    let n_kv_heads = match k.u32("num_key_value_heads")? {
        Some((0, path)) => return Err(format!("`{path}` must be at least 1")),
        Some(v) => field("n_kv_heads", v),
        None => n_heads,
    };
    let head_dim = match k.u32("head_dim")? {
        Some(v) => field("head_dim", v),
        None if mla.is_some() => 0,
        None => {
            if !dim.is_multiple_of(n_heads) {
                return Err(format!(
                    "`head_dim` is absent and hidden_size {dim} is not a multiple of \
                     num_attention_heads {n_heads}"
                ));
            }
            dim / n_heads
        }
    };
    if mla.is_none() && !n_heads.is_multiple_of(n_kv_heads) {
        return Err(format!(
            "`num_key_value_heads` = {n_kv_heads} does not divide num_attention_heads = {n_heads}"
        ));
    }

    // Mixture of experts.
    let experts = ["n_routed_experts", "num_local_experts", "num_experts"]
        .iter()
        .map(|key| k.u32(key))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .find(|(n, _)| *n > 0);
    let moe = match experts {
        None => None,
        Some(n_experts) => {
            for (key, expected) in [("moe_layer_freq", 1), ("decoder_sparse_step", 1)] {
                if let Some((v, path)) = k.u32(key)? {
                    if v != expected {
                        return Err(format!(
                            "`{path}` = {v}: only every layer being a mixture of experts \
                             (after first_k_dense_replace) is supported"
                        ));
                    }
                }
            }
            if let Some((v, path)) = k.get("mlp_only_layers") {
                if v.as_array().is_some_and(|a| !a.is_empty()) {
                    return Err(format!(
                        "`{path}` is not supported (dense layers in between)"
                    ));
                }
            }
            let n_experts = field("n_experts", n_experts);
            let (n_active, active_path) = k.positive("num_experts_per_tok")?;
            if n_active > n_experts {
                return Err(format!(
                    "`{active_path}` = {n_active} is more than the {n_experts} experts"
                ));
            }
            let expert_ffn_dim = match k.u32("moe_intermediate_size")? {
                Some(v) => field("expert_ffn_dim", v),
                None if ffn_dim > 0 => ffn_dim,
                None => return Err(k.missing("moe_intermediate_size")),
            };
            let n_dense_layers = match k.u32("first_k_dense_replace")? {
                Some((v, path)) if v > n_layers => {
                    return Err(format!(
                        "`{path}` = {v} is more than num_hidden_layers = {n_layers}"
                    ))
                }
                Some(v) => field("n_dense_layers", v),
                None => 0,
            };
            Some(Moe {
                n_experts,
                n_active: field("n_active", (n_active, active_path)),
                expert_ffn_dim,
                n_shared: match k.u32("n_shared_experts")? {
                    Some(v) => field("n_shared", v),
                    None => 0,
                },
                n_dense_layers,
                router_bias: matches!(k.str("topk_method")?, Some(("noaux_tc", _))),
            })
        }
    };
    let dense_layers = moe.map_or(n_layers, |m| m.n_dense_layers);
    if dense_layers > 0 && ffn_dim == 0 {
        return Err(k.missing("intermediate_size"));
    }

    // Sliding windows.
    let sliding_window = sliding(&k, family, n_layers, &mut field)?;

    let tied = k
        .bool("tie_word_embeddings")?
        .unwrap_or(family.tied_default);
    let qkv_bias = k.bool("attention_bias")?.unwrap_or(false) || family.qkv_bias;
    let ctx_train = k.u32("max_position_embeddings")?.map(|(v, _)| v);
    let arch = ArchSpec {
        n_layers,
        dim,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim,
        vocab,
        tied_embeddings: tied,
        qkv_bias,
        norms_per_layer: family.norms_per_layer,
        qk_norm: family.qk_norm,
        rope_dim: 0,
        mla,
        sliding_window,
        moe,
    };
    Ok(Config {
        model_type: model_type.to_string(),
        arch,
        ctx_train,
        keys,
    })
}

/// The sliding-window layers: `sliding_window` tokens, on the layers
/// `layer_types` marks `sliding_attention`, or all but every
/// `sliding_window_pattern`-th layer, or the family's default.
fn sliding(
    k: &Keys<'_>,
    family: &Family,
    n_layers: u32,
    field: &mut impl FnMut(&'static str, (u32, String)) -> u32,
) -> Result<Option<SlidingWindow>, String> {
    if k.bool("use_sliding_window")? == Some(false) {
        return Ok(None);
    }
    let Some((window, window_path)) = k.u32("sliding_window")? else {
        return Ok(None);
    };
    if window == 0 {
        return Err(format!("`{window_path}` must be at least 1 (or null)"));
    }
    let window = field("sliding_window", (window, window_path));
    let every_nth = |n: u32| n_layers - n_layers / n;
    let n_sliding = if let Some((v, path)) = k.get("layer_types") {
        let types = v
            .as_array()
            .ok_or_else(|| format!("`{path}` must be a list, got {v}"))?;
        if types.len() != n_layers as usize {
            return Err(format!(
                "`{path}` lists {} layers, num_hidden_layers is {n_layers}",
                types.len()
            ));
        }
        let mut n = 0u32;
        for t in types {
            match t.as_str() {
                Some("sliding_attention") => n += 1,
                Some("full_attention") => {}
                _ => {
                    return Err(format!(
                        "`{path}` has {t}: expected \"sliding_attention\" or \"full_attention\""
                    ))
                }
            }
        }
        field("n_sliding_layers", (n, path))
    } else if let Some((n, path)) = match k.u32("sliding_window_pattern")? {
        Some(p) => Some(p),
        None => k.u32("_sliding_window_pattern")?,
    } {
        if n == 0 {
            return Err(format!("`{path}` must be at least 1"));
        }
        field("n_sliding_layers", (every_nth(n), path))
    } else {
        match family.sliding {
            Sliding::All => n_layers,
            Sliding::Pattern(n) => every_nth(n),
            Sliding::FromMaxWindowLayers => {
                let (first, path) = k.req("max_window_layers")?;
                if first > n_layers {
                    return Err(format!(
                        "`{path}` = {first} is more than num_hidden_layers = {n_layers}"
                    ));
                }
                n_layers - first
            }
        }
    };
    Ok((n_sliding > 0).then_some(SlidingWindow {
        window,
        n_sliding_layers: n_sliding,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama() -> Value {
        serde_json::json!({
            "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
            "intermediate_size": 14336, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256,
            "tie_word_embeddings": false, "max_position_embeddings": 131072
        })
    }

    fn with(mut v: Value, key: &str, value: Value) -> String {
        v[key] = value;
        v.to_string()
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err()
    }

    #[test]
    fn a_llama_config_reads_into_the_architecture() {
        let c = parse(&llama().to_string()).unwrap();
        assert_eq!(c.model_type, "llama");
        let a = c.arch;
        assert_eq!(
            (
                a.n_layers,
                a.dim,
                a.n_heads,
                a.n_kv_heads,
                a.head_dim,
                a.ffn_dim
            ),
            (32, 4096, 32, 8, 128, 14336)
        );
        assert_eq!(
            (a.vocab, a.tied_embeddings, a.qkv_bias),
            (128_256, false, false)
        );
        assert!(a.mla.is_none() && a.moe.is_none() && a.sliding_window.is_none());
        assert_eq!(c.ctx_train, Some(131_072));
        assert_eq!(c.key_of("n_kv_heads"), Some("num_key_value_heads"));
    }

    #[test]
    fn missing_unknown_and_inconsistent_keys_are_named() {
        let mut v = llama();
        v.as_object_mut().unwrap().remove("hidden_size");
        assert_eq!(err(&v.to_string()), "missing key `hidden_size`");
        assert!(
            err(&with(llama(), "model_type", "gpt9".into())).contains("`model_type` = \"gpt9\"")
        );
        assert!(err(&with(llama(), "num_key_value_heads", 5.into()))
            .contains("`num_key_value_heads` = 5 does not divide"));
        assert!(err(&with(llama(), "hidden_size", "big".into()))
            .contains("`hidden_size` must be a non-negative integer"));
        assert!(err(&with(llama(), "num_hidden_layers", 0.into()))
            .contains("`num_hidden_layers` must be at least 1"));
        assert!(err(&with(llama(), "num_attention_heads", 4097.5.into()))
            .contains("`num_attention_heads`"));
        assert!(err(&with(llama(), "tie_word_embeddings", 1.into()))
            .contains("`tie_word_embeddings` must be true or false"));
        let mut odd = llama();
        odd["num_attention_heads"] = 3.into();
        odd["num_key_value_heads"] = 3.into();
        assert!(err(&odd.to_string()).contains("`head_dim` is absent"));
        assert!(err("[1, 2]").contains("not a JSON object"));
        assert!(err("{").contains("not valid JSON"));
        // A key that is present but null counts as absent.
        let c = parse(&with(llama(), "sliding_window", Value::Null)).unwrap();
        assert!(c.arch.sliding_window.is_none());
    }

    #[test]
    fn sliding_layers_come_from_the_layer_list_the_pattern_or_the_family() {
        // Mistral: every layer slides.
        let mut m = llama();
        m["model_type"] = "mistral".into();
        m["sliding_window"] = 4096.into();
        let w = parse(&m.to_string()).unwrap().arch.sliding_window.unwrap();
        assert_eq!((w.window, w.n_sliding_layers), (4096, 32));
        // A pattern of 6: layers 6, 12, ... (1-based) are global: 32 - 5 = 27 slide.
        m["sliding_window_pattern"] = 6.into();
        let w = parse(&m.to_string()).unwrap().arch.sliding_window.unwrap();
        assert_eq!(w.n_sliding_layers, 27);
        // An explicit layer list wins; its length must match.
        let mut types = vec![Value::from("full_attention"); 32];
        types[0] = "sliding_attention".into();
        m["layer_types"] = Value::Array(types.clone());
        let w = parse(&m.to_string()).unwrap().arch.sliding_window.unwrap();
        assert_eq!(w.n_sliding_layers, 1);
        types.pop();
        m["layer_types"] = Value::Array(types.clone());
        assert!(err(&m.to_string()).contains("`layer_types` lists 31 layers"));
        types.push("chunked".into());
        m["layer_types"] = Value::Array(types);
        assert!(err(&m.to_string()).contains("expected \"sliding_attention\""));
        // Qwen2 with use_sliding_window false: no window at all.
        let mut q = llama();
        q["model_type"] = "qwen2".into();
        q["sliding_window"] = 32768.into();
        q["use_sliding_window"] = false.into();
        let c = parse(&q.to_string()).unwrap();
        assert!(c.arch.sliding_window.is_none());
        assert!(c.arch.qkv_bias);
        // ... and with it on, from max_window_layers.
        q["use_sliding_window"] = true.into();
        assert_eq!(err(&q.to_string()), "missing key `max_window_layers`");
        q["max_window_layers"] = 28.into();
        let w = parse(&q.to_string()).unwrap().arch.sliding_window.unwrap();
        assert_eq!(w.n_sliding_layers, 4);
    }

    #[test]
    fn text_config_nesting_and_moe_keys() {
        let nested = serde_json::json!({
            "model_type": "gemma3",
            "text_config": {
                "model_type": "gemma3_text", "num_hidden_layers": 34, "hidden_size": 2560,
                "intermediate_size": 10240, "num_attention_heads": 8,
                "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208,
                "sliding_window": 1024, "sliding_window_pattern": 6
            },
            "vision_config": {"hidden_size": 1152, "num_hidden_layers": 27}
        });
        let c = parse(&nested.to_string()).unwrap();
        assert_eq!(c.model_type, "gemma3_text");
        assert_eq!((c.arch.n_layers, c.arch.dim), (34, 2560));
        assert!(c.arch.tied_embeddings, "Gemma 3 ties by default");
        assert_eq!(c.key_of("dim"), Some("text_config.hidden_size"));
        let mut broken = nested.clone();
        broken["text_config"]
            .as_object_mut()
            .unwrap()
            .remove("vocab_size");
        assert_eq!(
            err(&broken.to_string()),
            "missing key `vocab_size` (looked in text_config and at the top level)"
        );
        // Mixtral: the expert width is intermediate_size.
        let mut mix = llama();
        mix["model_type"] = "mixtral".into();
        mix["num_local_experts"] = 8.into();
        mix["num_experts_per_tok"] = 2.into();
        let m = parse(&mix.to_string()).unwrap().arch.moe.unwrap();
        assert_eq!((m.n_experts, m.n_active, m.expert_ffn_dim), (8, 2, 14336));
        mix["num_experts_per_tok"] = 9.into();
        assert!(err(&mix.to_string()).contains("`num_experts_per_tok` = 9 is more than"));
        mix.as_object_mut().unwrap().remove("num_experts_per_tok");
        assert_eq!(err(&mix.to_string()), "missing key `num_experts_per_tok`");
        mix["num_experts_per_tok"] = 2.into();
        mix["first_k_dense_replace"] = 40.into();
        assert!(err(&mix.to_string()).contains("`first_k_dense_replace` = 40"));
        mix["first_k_dense_replace"] = 0.into();
        mix["moe_layer_freq"] = 2.into();
        assert!(err(&mix.to_string()).contains("`moe_layer_freq` = 2"));
        // MLA needs all of its keys.
        let mut ds = llama();
        ds["model_type"] = "deepseek_v3".into();
        ds["kv_lora_rank"] = 512.into();
        assert_eq!(err(&ds.to_string()), "missing key `qk_nope_head_dim`");
    }

    #[test]
    fn core_range_errors_name_the_config_key() {
        let c = parse(&with(llama(), "num_key_value_heads", 64.into()));
        // 32 heads, 64 KV heads: not a divisor (caught here, naming the key).
        assert!(c.unwrap_err().contains("num_key_value_heads"));
        let c = parse(&with(llama(), "hidden_size", (1u64 << 25).into())).unwrap();
        let e = c.arch.validate().unwrap_err();
        assert_eq!(
            c.explain(&e),
            "hidden_size = 33554432 is out of range (accepted: 1 to 16777216)"
        );
    }
}
