//! The plan file: compact TOML (a `[defaults]` layer table plus `[[layers]]` overrides)
//! that expands into a full [`Plan`] for a given layer count, and the writer that produces
//! the compact form back from a plan.
//!
//! ```toml
//! schema = 1
//! name = "mine"
//! weights = "q4_1"
//! [defaults]
//! softmax = "f32"
//! [defaults.gate_up]
//! bits = 8
//! [[layers]]
//! index = [20, 21]      # or a single index
//! prune = 0.1
//! [layers.down]
//! bits = 4
//! ```
//!
//! Later `[[layers]]` entries override earlier ones field by field. Parsing is strict:
//! unknown keys, out-of-range layers, impossible bits/scheme/variant combinations and ratios
//! outside [0, 1) are errors that name the file and the key.

use super::{
    Calibration, LayerPlan, Plan, PlanError, Positions, Scheme, Site, SitePlan, SoftmaxMode, TunerInfo,
    VariantChoice, WeightFormat, SCHEMA,
};
use serde::{Deserialize, Serialize};

/// One site table; absent fields inherit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl SiteFile {
    fn is_empty(&self) -> bool {
        self.bits.is_none() && self.scheme.is_none() && self.variant.is_none()
    }
}

/// Generates the `[defaults]` table type and the `[[layers]]` entry type (the same fields,
/// plus `index`), because serde's `flatten` does not combine with `deny_unknown_fields`.
macro_rules! layer_tables {
    ($(#[$m:meta])* struct $name:ident { $($extra:tt)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($extra)*
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub softmax: Option<SoftmaxMode>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub prune: Option<f64>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub low_bit: Option<f64>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub low_bit_variant: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub qkv: Option<SiteFile>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub o: Option<SiteFile>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub gate_up: Option<SiteFile>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub down: Option<SiteFile>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub qk: Option<SiteFile>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub pv: Option<SiteFile>,
        }
    };
}

layer_tables!(
    /// `[defaults]`: applies to every layer.
    struct LayerFields {}
);
layer_tables!(
    /// One `[[layers]]` entry: overrides for the layers in `index`.
    struct LayerOverride {
        pub index: IndexSpec,
    }
);

/// `index = 20` or `index = [20, 21, 22]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IndexSpec {
    One(usize),
    Many(Vec<usize>),
}

impl Default for IndexSpec {
    fn default() -> Self {
        IndexSpec::Many(Vec::new())
    }
}

impl IndexSpec {
    fn indices(&self) -> Vec<usize> {
        match self {
            IndexSpec::One(i) => vec![*i],
            IndexSpec::Many(v) => v.clone(),
        }
    }
}

macro_rules! site_accessors {
    ($t:ty) => {
        impl $t {
            fn site(&self, s: Site) -> Option<&SiteFile> {
                match s {
                    Site::Qkv => self.qkv.as_ref(),
                    Site::O => self.o.as_ref(),
                    Site::GateUp => self.gate_up.as_ref(),
                    Site::Down => self.down.as_ref(),
                    Site::Qk => self.qk.as_ref(),
                    Site::Pv => self.pv.as_ref(),
                    Site::LmHead => None,
                }
            }
        }
    };
}
site_accessors!(LayerFields);

impl LayerOverride {
    fn fields(&self) -> LayerFields {
        LayerFields {
            softmax: self.softmax,
            prune: self.prune,
            low_bit: self.low_bit,
            low_bit_variant: self.low_bit_variant.clone(),
            qkv: self.qkv.clone(),
            o: self.o.clone(),
            gate_up: self.gate_up.clone(),
            down: self.down.clone(),
            qk: self.qk.clone(),
            pv: self.pv.clone(),
        }
    }

    fn from_fields(index: IndexSpec, f: LayerFields) -> Self {
        LayerOverride {
            index,
            softmax: f.softmax,
            prune: f.prune,
            low_bit: f.low_bit,
            low_bit_variant: f.low_bit_variant,
            qkv: f.qkv,
            o: f.o,
            gate_up: f.gate_up,
            down: f.down,
            qk: f.qk,
            pv: f.pv,
        }
    }
}

impl LayerFields {
    fn site_mut(&mut self, s: Site) -> &mut Option<SiteFile> {
        match s {
            Site::Qkv => &mut self.qkv,
            Site::O => &mut self.o,
            Site::GateUp => &mut self.gate_up,
            Site::Down => &mut self.down,
            Site::Qk => &mut self.qk,
            Site::Pv => &mut self.pv,
            Site::LmHead => unreachable!("lm_head is not a layer site"),
        }
    }

    fn is_empty(&self) -> bool {
        *self == LayerFields::default()
    }
}

/// The file as written: header plus compact layer tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub schema: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    /// When set, the plan only expands for a model with this many layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_layer: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Positions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuner: Option<TunerInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm_head: Option<SiteFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<LayerFields>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerOverride>,
}

/// A parsed file remembering its name for error messages.
#[derive(Clone, Debug)]
pub struct ParsedPlan {
    pub source: String,
    pub file: PlanFile,
}

/// Only the version, read leniently first so that a newer schema is reported as such rather
/// than as a list of unknown keys.
#[derive(Deserialize)]
struct VersionOnly {
    schema: Option<toml::Value>,
}

/// Parses plan text; `source` names the file in errors.
pub fn parse(text: &str, source: &str) -> Result<ParsedPlan, PlanError> {
    let toml_err = |e: toml::de::Error| PlanError::Toml { file: source.into(), msg: one_line(text, &e) };
    let version: VersionOnly = toml::from_str(text).map_err(toml_err)?;
    match version.schema {
        None => return Err(invalid(source, "schema", format!("missing; plan files start with `schema = {SCHEMA}`"))),
        Some(toml::Value::Integer(v)) if v == SCHEMA as i64 => {}
        Some(v) => {
            return Err(invalid(source, "schema", format!("unsupported schema version {v} (this agq reads {SCHEMA})")))
        }
    }
    let file: PlanFile = toml::from_str(text).map_err(toml_err)?;
    Ok(ParsedPlan { source: source.into(), file })
}

/// toml's multi-line error as `line L, column C: message`.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
            let src = text.lines().nth(line - 1).unwrap_or("").trim();
            // The enclosing table header, since a key alone (`bits`) is ambiguous.
            let table = text
                .lines()
                .take(line - 1)
                .filter(|l| l.trim_start().starts_with('['))
                .last()
                .map(|l| format!(" in {}", l.trim()))
                .unwrap_or_default();
            format!("line {line}, column {col}{table} (`{src}`): {}", e.message().trim())
        }
        None => e.message().trim().to_string(),
    }
}

fn invalid(file: &str, key: impl Into<String>, msg: impl Into<String>) -> PlanError {
    PlanError::Invalid { file: file.into(), key: key.into(), msg: msg.into() }
}

/// A value and the key that set it, so combination errors can point at the right line.
#[derive(Clone, Debug)]
struct Src<T> {
    v: T,
    key: String,
}

fn builtin<T>(v: T) -> Src<T> {
    Src { v, key: "(built-in default)".into() }
}

#[derive(Clone, Debug)]
struct SiteSrc {
    bits: Src<u8>,
    scheme: Src<Scheme>,
    variant: Src<VariantChoice>,
}

impl SiteSrc {
    fn float() -> Self {
        SiteSrc { bits: builtin(16), scheme: builtin(Scheme::Token), variant: builtin(VariantChoice::Auto) }
    }

    fn apply(&mut self, f: &SiteFile, at: &str, file: &str) -> Result<(), PlanError> {
        if let Some(b) = f.bits {
            let key = format!("{at}.bits");
            if ![16, 8, 4].contains(&b) {
                return Err(invalid(file, key, format!("bits = {b} is not supported (16 = float, 8 or 4)")));
            }
            self.bits = Src { v: b, key };
        }
        if let Some(s) = f.scheme {
            self.scheme = Src { v: s, key: format!("{at}.scheme") };
        }
        if let Some(v) = &f.variant {
            let key = format!("{at}.variant");
            let choice = VariantChoice::parse(v).map_err(|e| invalid(file, &key, e))?;
            self.variant = Src { v: choice, key };
        }
        Ok(())
    }

    fn plan(&self) -> SitePlan {
        SitePlan { bits: self.bits.v, scheme: self.scheme.v, variant: self.variant.v }
    }
}

#[derive(Clone, Debug)]
struct LayerSrc {
    sites: Vec<(Site, SiteSrc)>,
    softmax: Src<SoftmaxMode>,
    prune: Src<f64>,
    low_bit: Src<f64>,
    low_bit_variant: Src<VariantChoice>,
}

impl LayerSrc {
    fn new() -> Self {
        LayerSrc {
            sites: Site::LAYER.iter().map(|&s| (s, SiteSrc::float())).collect(),
            softmax: builtin(SoftmaxMode::F32),
            prune: builtin(0.0),
            low_bit: builtin(0.0),
            low_bit_variant: builtin(VariantChoice::Auto),
        }
    }

    fn apply(&mut self, f: &LayerFields, at: &str, file: &str) -> Result<(), PlanError> {
        if let Some(s) = f.softmax {
            self.softmax = Src { v: s, key: format!("{at}.softmax") };
        }
        for (name, val, slot) in [("prune", f.prune, &mut self.prune), ("low_bit", f.low_bit, &mut self.low_bit)] {
            if let Some(r) = val {
                let key = format!("{at}.{name}");
                if !(0.0..1.0).contains(&r) {
                    return Err(invalid(file, key, format!("{name} = {r} is outside [0, 1)")));
                }
                *slot = Src { v: r, key };
            }
        }
        if let Some(v) = &f.low_bit_variant {
            let key = format!("{at}.low_bit_variant");
            let choice = VariantChoice::parse(v).map_err(|e| invalid(file, &key, e))?;
            self.low_bit_variant = Src { v: choice, key };
        }
        for (s, site) in self.sites.iter_mut() {
            if let Some(sf) = f.site(*s) {
                site.apply(sf, &format!("{at}.{s}"), file)?;
            }
        }
        Ok(())
    }
}

/// Bits/scheme/variant combinations a site can run.
fn check_site(s: Site, x: &SiteSrc, weights: WeightFormat, layer: &str, file: &str) -> Result<(), PlanError> {
    let (bits, scheme, variant) = (x.bits.v, x.scheme.v, x.variant.v);
    let from = |src: &Src<u8>| format!("{layer}{s} has bits = {bits} (from `{}`)", src.key);
    if s.is_linear() {
        if weights == WeightFormat::F16 && bits != 16 {
            return Err(invalid(
                file,
                &x.bits.key,
                format!("weights = \"f16\" needs float activations at linear sites, but {}", from(&x.bits)),
            ));
        }
        if let VariantChoice::Fixed(v) = variant {
            if v.activation_bits() != bits {
                return Err(invalid(
                    file,
                    &x.variant.key,
                    format!("variant {v} takes {}-bit activations, but {}", v.activation_bits(), from(&x.bits)),
                ));
            }
            if weights == WeightFormat::F16 && v != kernels::Variant::F16 {
                return Err(invalid(file, &x.variant.key, format!("weights = \"f16\" needs variant f16, not {v}")));
            }
            if bits != 16 && !scheme.runs_on(v) {
                return Err(invalid(
                    file,
                    &x.variant.key,
                    format!(
                        "variant {v} has no per-block activation scales, but {layer}{s} uses scheme = \"group\" (from `{}`); use w4a8, w4a4-widen or auto",
                        x.scheme.key
                    ),
                ));
            }
        }
    } else {
        if bits == 4 {
            return Err(invalid(
                file,
                &x.bits.key,
                format!("attention site {s} supports bits 16 or 8, but {}", from(&x.bits)),
            ));
        }
        if variant != VariantChoice::Auto {
            return Err(invalid(file, &x.variant.key, format!("attention site {s} has no kernel variant; use \"auto\"")));
        }
        if bits == 8 && scheme != Scheme::Token {
            return Err(invalid(
                file,
                &x.scheme.key,
                format!("attention site {s} quantizes per head and token; scheme \"{}\" is not supported", scheme.name()),
            ));
        }
    }
    Ok(())
}

impl ParsedPlan {
    /// The full plan for a model with `n_layer` layers.
    pub fn expand(&self, n_layer: usize) -> Result<Plan, PlanError> {
        let (f, file) = (&self.file, self.source.as_str());
        if let Some(n) = f.n_layer {
            if n != n_layer {
                return Err(invalid(file, "n_layer", format!("the plan is for {n} layers, the model has {n_layer}")));
            }
        }
        for (key, hash) in [
            ("model_sha256", f.model_sha256.as_deref()),
            ("calibration.text_sha256", f.calibration.as_ref().and_then(|c| c.text_sha256.as_deref())),
        ] {
            if let Some(h) = hash {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(file, key, format!("`{h}` is not a sha256 (64 hex digits)")));
                }
            }
        }
        if let Some(t) = &f.tuner {
            for (key, v) in [("tuner.predicted_latency_ms", t.predicted_latency_ms), ("tuner.measured_ppl", t.measured_ppl)] {
                if let Some(v) = v {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(invalid(file, key, format!("{v} is not a finite non-negative number")));
                    }
                }
            }
        }
        let weights = f.weights.unwrap_or_default();

        let mut base = LayerSrc::new();
        if let Some(d) = &f.defaults {
            base.apply(d, "defaults", file)?;
        }
        let mut layers = vec![base; n_layer];
        for (i, o) in f.layers.iter().enumerate() {
            let idx = o.index.indices();
            if idx.is_empty() {
                return Err(invalid(file, format!("layers[{i}].index"), "lists no layer"));
            }
            let fields = o.fields();
            for l in idx {
                if l >= n_layer {
                    return Err(invalid(
                        file,
                        format!("layers[{i}].index"),
                        format!("layer {l} is out of range (the model has {n_layer} layers, 0..={})", n_layer.saturating_sub(1)),
                    ));
                }
                layers[l].apply(&fields, &format!("layers[{i}]"), file)?;
            }
        }

        let mut lm = SiteSrc::float();
        if let Some(h) = &f.lm_head {
            lm.apply(h, "lm_head", file)?;
        }
        check_site(Site::LmHead, &lm, weights, "", file)?;

        let mut out = Vec::with_capacity(n_layer);
        for (l, x) in layers.iter().enumerate() {
            let at = format!("layer {l}: ");
            for (s, site) in &x.sites {
                check_site(*s, site, weights, &at, file)?;
            }
            let mut lp = LayerPlan {
                softmax: x.softmax.v,
                prune: x.prune.v,
                low_bit: x.low_bit.v,
                low_bit_variant: x.low_bit_variant.v,
                ..LayerPlan::default()
            };
            for (s, site) in &x.sites {
                *lp.site_mut(*s) = site.plan();
            }
            if lp.low_bit > 0.0 && lp.low_bit_sites().is_empty() {
                return Err(invalid(
                    file,
                    &x.low_bit.key,
                    format!("{at}low_bit = {} needs at least one of o, gate_up, down at bits = 8", lp.low_bit),
                ));
            }
            if let VariantChoice::Fixed(v) = lp.low_bit_variant {
                if v.activation_bits() != 4 {
                    return Err(invalid(
                        file,
                        &x.low_bit_variant.key,
                        format!("{at}low_bit_variant must be a 4-bit-activation variant, not {v}"),
                    ));
                }
                // The INT4 rows of a group site keep block scales.
                if lp.low_bit > 0.0 {
                    if let Some(&g) = lp.low_bit_sites().iter().find(|&&s| lp.site(s).scheme == Scheme::Group) {
                        if !Scheme::Group.runs_on(v) {
                            return Err(invalid(
                                file,
                                &x.low_bit_variant.key,
                                format!("{at}low_bit_variant {v} has no per-block activation scales, but {g} uses scheme = \"group\"; use w4a4-widen or auto"),
                            ));
                        }
                    }
                }
            }
            out.push(lp);
        }

        Ok(Plan {
            name: f.name.clone(),
            description: f.description.clone(),
            model_sha256: f.model_sha256.clone(),
            weights,
            positions: f.positions.unwrap_or_default(),
            calibration: f.calibration.clone(),
            tuner: f.tuner.clone(),
            lm_head: lm.plan(),
            layers: out,
        })
    }
}

fn site_file(p: &SitePlan) -> SiteFile {
    SiteFile { bits: Some(p.bits), scheme: Some(p.scheme), variant: Some(p.variant.name().into()) }
}

/// Fields of `p` that differ from `d`.
fn site_diff(p: &SitePlan, d: &SitePlan) -> Option<SiteFile> {
    let f = SiteFile {
        bits: (p.bits != d.bits).then_some(p.bits),
        scheme: (p.scheme != d.scheme).then_some(p.scheme),
        variant: (p.variant != d.variant).then(|| p.variant.name().into()),
    };
    (!f.is_empty()).then_some(f)
}

/// The value most layers have (ties: the one seen first), which becomes the default.
fn mode<T: PartialEq + Copy>(vals: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for v in vals {
        match counts.iter_mut().find(|(x, _)| *x == v) {
            Some(c) => c.1 += 1,
            None => counts.push((v, 1)),
        }
    }
    let best = counts.iter().map(|c| c.1).max()?;
    counts.into_iter().find(|c| c.1 == best).map(|c| c.0)
}

/// The compact form of `plan`: per-field majority values as `[defaults]`, and one
/// `[[layers]]` entry per distinct set of differences.
pub fn to_toml(plan: &Plan) -> String {
    let ls = &plan.layers;
    let mut d = LayerPlan {
        softmax: mode(ls.iter().map(|l| l.softmax)).unwrap_or_default(),
        prune: mode(ls.iter().map(|l| l.prune)).unwrap_or(0.0),
        low_bit: mode(ls.iter().map(|l| l.low_bit)).unwrap_or(0.0),
        low_bit_variant: mode(ls.iter().map(|l| l.low_bit_variant)).unwrap_or_default(),
        ..LayerPlan::default()
    };
    for s in Site::LAYER {
        let ds = d.site_mut(s);
        ds.bits = mode(ls.iter().map(|l| l.site(s).bits)).unwrap_or(16);
        ds.scheme = mode(ls.iter().map(|l| l.site(s).scheme)).unwrap_or_default();
        ds.variant = mode(ls.iter().map(|l| l.site(s).variant)).unwrap_or_default();
    }
    let mut defaults = LayerFields {
        softmax: Some(d.softmax),
        prune: Some(d.prune),
        low_bit: Some(d.low_bit),
        low_bit_variant: Some(d.low_bit_variant.name().into()),
        ..LayerFields::default()
    };
    for s in Site::LAYER {
        *defaults.site_mut(s) = Some(site_file(d.site(s)));
    }

    let mut groups: Vec<(Vec<usize>, LayerFields)> = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        let mut diff = LayerFields {
            softmax: (l.softmax != d.softmax).then_some(l.softmax),
            prune: (l.prune != d.prune).then_some(l.prune),
            low_bit: (l.low_bit != d.low_bit).then_some(l.low_bit),
            low_bit_variant: (l.low_bit_variant != d.low_bit_variant).then(|| l.low_bit_variant.name().into()),
            ..LayerFields::default()
        };
        for s in Site::LAYER {
            *diff.site_mut(s) = site_diff(l.site(s), d.site(s));
        }
        if diff.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|g| g.1 == diff) {
            Some(g) => g.0.push(i),
            None => groups.push((vec![i], diff)),
        }
    }
    let layers = groups
        .into_iter()
        .map(|(idx, f)| {
            let index = if idx.len() == 1 { IndexSpec::One(idx[0]) } else { IndexSpec::Many(idx) };
            LayerOverride::from_fields(index, f)
        })
        .collect();

    let file = PlanFile {
        schema: SCHEMA,
        name: plan.name.clone(),
        description: plan.description.clone(),
        model_sha256: plan.model_sha256.clone(),
        n_layer: Some(plan.n_layer()),
        weights: Some(plan.weights),
        positions: Some(plan.positions),
        calibration: plan.calibration.clone(),
        tuner: plan.tuner.clone(),
        lm_head: Some(site_file(&plan.lm_head)),
        defaults: Some(defaults),
        layers,
    };
    toml::to_string_pretty(&file).expect("plan serializes to TOML")
}
