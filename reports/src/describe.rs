//! Sentences for captions: which device, which model, which protocol a profile states.

use profiler::profile::{DeviceProfile, ProfileKind};

/// "Intel Xeon ... (slug, 2 logical cores, x86_64, kernels avx2)".
pub fn device(p: &DeviceProfile) -> String {
    let d = &p.device;
    let name = d.cpu.brand.clone().unwrap_or_else(|| d.slug.clone());
    let mut s = format!("{name} (`{}`, {} logical cores, {}", d.slug, d.logical_cores, d.arch);
    if !d.kernel_isas.is_empty() {
        s.push_str(&format!(", kernel ISAs {}", d.kernel_isas.join("/")));
    }
    s.push(')');
    if p.kind == ProfileKind::SpecSheet {
        s.push_str(" — a spec-sheet device: figures from published ceilings, nothing measured");
    }
    s
}

pub fn model(p: &DeviceProfile) -> String {
    match &p.model {
        Some(m) => format!(
            "{} ({} layers, d_model {}, d_ff {}, sha256 {}…)",
            m.name,
            m.n_layer,
            m.d_model,
            m.d_ff,
            m.sha256.get(..12).unwrap_or(&m.sha256)
        ),
        None => "no model (spec-sheet profile)".into(),
    }
}

/// The measurement protocol in one sentence.
pub fn protocol(p: &DeviceProfile) -> String {
    let m = &p.measurement;
    let mut s = format!(
        "Timed with `agq` {}{} starting {}{}: {}; at least {} samples, CV threshold {:.0}%, threads {}pinned, {} perf counters{}.",
        p.tool.version,
        p.tool.git_commit.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
        m.started,
        m.finished.as_deref().map(|f| format!(" until {f}")).unwrap_or_else(|| " (unfinished run)".into()),
        m.protocol.trim_end_matches('.'),
        m.min_samples,
        m.cv_threshold * 100.0,
        if m.pinned { "" } else { "not " },
        m.counters,
        if m.quick { "; quick mode (fewer shapes)" } else { "" },
    );
    s.push_str(&format!(
        " Thread counts {:?}, token counts {:?}, KV lengths {:?}. Times are medians per call.",
        m.thread_counts, m.token_counts, m.kv_lengths
    ));
    s
}

/// The protocol in a clause, for captions (the full text heads the page).
pub fn protocol_short(p: &DeviceProfile) -> String {
    let m = &p.measurement;
    format!(
        "Protocol: medians per call of at least {} samples (CV threshold {:.0}%), threads {}pinned, {} perf counters, measured {}{} (full protocol at the top of this page).",
        m.min_samples,
        m.cv_threshold * 100.0,
        if m.pinned { "" } else { "not " },
        m.counters,
        m.started.get(..10).unwrap_or(&m.started),
        if m.quick { ", quick mode" } else { "" }
    )
}
