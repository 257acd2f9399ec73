//! `agq device`: print this machine's fingerprint.

use profiler::device::DeviceFingerprint;
use std::fmt::Write;

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let fp = DeviceFingerprint::detect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&fp)?);
    } else {
        print!("{}", human(&fp));
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human(fp: &DeviceFingerprint) -> String {
    let mut s = String::new();
    let c = &fp.cpu;
    let _ = writeln!(s, "device      {}", fp.slug);
    let _ = writeln!(s, "cpu         {} ({})", opt(&c.brand), opt(&c.vendor));
    let _ = writeln!(
        s,
        "            family {} model {} stepping {}, microarch {}",
        opt(&c.family),
        opt(&c.model),
        opt(&c.stepping),
        opt(&c.microarch)
    );
    let _ = writeln!(s, "cores       {} logical, {} physical", fp.logical_cores, opt(&fp.physical_cores));
    if let (Some(mhz), Some(src)) = (fp.cpu_mhz, &fp.cpu_mhz_source) {
        let _ = writeln!(s, "clock       {mhz:.0} MHz ({src})");
    }
    let on: Vec<&str> = fp.features.iter().filter(|(_, v)| **v).map(|(k, _)| k.as_str()).collect();
    let off: Vec<&str> = fp.features.iter().filter(|(_, v)| !**v).map(|(k, _)| k.as_str()).collect();
    let _ = writeln!(s, "features    {}", if on.is_empty() { "none".into() } else { on.join(" ") });
    if !off.is_empty() {
        let _ = writeln!(s, "missing     {}", off.join(" "));
    }
    let _ = writeln!(s, "kernel isas {}", fp.kernel_isas.join(" "));
    for cache in &fp.caches {
        let _ = writeln!(
            s,
            "cache       L{} {:<11} {:>10}  line {}  ways {}  shared by cpus {}",
            cache.level,
            cache.kind,
            bytes(cache.size_bytes),
            opt(&cache.line_bytes),
            opt(&cache.ways),
            opt(&cache.shared_cpu_list)
        );
    }
    let _ = writeln!(s, "memory      {}", fp.memory_bytes.map_or("unknown".into(), bytes));
    let _ = writeln!(s, "os          {} {} (kernel {})", opt(&fp.os.name), opt(&fp.os.version), opt(&fp.os.kernel));
    for ctr in &fp.counters {
        let state = if ctr.available { "available".to_string() } else { format!("unavailable: {}", opt(&ctr.reason)) };
        let _ = writeln!(s, "counter     {:<17} {state}", ctr.name.name());
    }
    for n in &fp.notes {
        let _ = writeln!(s, "note        {n}");
    }
    s
}
