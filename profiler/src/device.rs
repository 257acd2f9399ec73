//! The device fingerprint: what a measurement was taken on. It is embedded in every
//! measurement record and device profile so numbers from different machines never mix.
//! It deliberately holds no hostname or other identity, only hardware and OS facts.
//!
//! Every probe is best-effort: a missing or garbled source leaves a field empty and adds a
//! note; building a fingerprint never fails.

use crate::counters::{self, CounterStatus};
use kernels::Isa;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Bumped when a field changes meaning.
pub const FINGERPRINT_SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceFingerprint {
    pub schema: u32,
    /// Short, file-name-safe name, e.g. `amd-epyc-zen3-2c-avx2`.
    pub slug: String,
    /// Rust's name for the target architecture (`x86_64`, `aarch64`).
    pub arch: String,
    #[serde(default)]
    pub cpu: CpuInfo,
    /// CPUs this process may run on.
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    /// Kernel-relevant ISA features for this architecture, each detected at run time.
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
    /// Kernel ISAs (`kernels::Isa`) this CPU can run, best last.
    #[serde(default)]
    pub kernel_isas: Vec<String>,
    #[serde(default)]
    pub caches: Vec<CacheInfo>,
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub os: OsInfo,
    pub cpu_mhz: Option<f64>,
    /// Where `cpu_mhz` came from (a VM's /proc/cpuinfo often shows a nominal value).
    pub cpu_mhz_source: Option<String>,
    #[serde(default)]
    pub counters: Vec<CounterStatus>,
    /// Probes that failed or found odd data.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub vendor: Option<String>,
    pub brand: Option<String>,
    pub family: Option<u32>,
    pub model: Option<u32>,
    pub stepping: Option<u32>,
    /// Microarchitecture guessed from vendor/family/model (x86) or part number (ARM).
    pub microarch: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    pub level: u8,
    /// `Data`, `Instruction` or `Unified`, as sysfs names it.
    pub kind: String,
    pub size_bytes: u64,
    pub line_bytes: Option<u32>,
    pub ways: Option<u32>,
    /// CPUs sharing this cache, sysfs list syntax (`0-1`).
    pub shared_cpu_list: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OsInfo {
    pub name: Option<String>,
    pub version: Option<String>,
    pub kernel: Option<String>,
}

const SYS_CACHE_DIR: &str = "/sys/devices/system/cpu/cpu0/cache";

impl DeviceFingerprint {
    /// Probe this machine (a few milliseconds; opens and closes each perf counter once).
    pub fn detect() -> DeviceFingerprint {
        let mut notes = Vec::new();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = detect_cpu(&cpuinfo);
        let features = detect_features();
        let (caches, cache_notes) = parse_cache_dir(Path::new(SYS_CACHE_DIR));
        notes.extend(cache_notes);
        let logical_cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let physical_cores = sysinfo::System::physical_core_count().ok();
        let memory_bytes = detect_memory();
        if memory_bytes.is_none() {
            notes.push("total memory unknown (sysinfo could not read it)".into());
        }
        let os = OsInfo {
            name: sysinfo::System::name().ok(),
            version: sysinfo::System::os_version().ok(),
            kernel: sysinfo::System::kernel_version().ok(),
        };
        let (cpu_mhz, cpu_mhz_source) = match detect_mhz(&cpuinfo) {
            Some((mhz, src)) => (Some(mhz), Some(src)),
            None => (None, None),
        };
        let kernel_isas = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.is_available())
            .map(|i| i.name().to_string())
            .collect();
        let mut fp = DeviceFingerprint {
            schema: FINGERPRINT_SCHEMA,
            slug: String::new(),
            arch: std::env::consts::ARCH.to_string(),
            cpu,
            logical_cores,
            physical_cores,
            features,
            kernel_isas,
            caches,
            memory_bytes,
            os,
            cpu_mhz,
            cpu_mhz_source,
            counters: counters::probe(),
            notes,
        };
        fp.slug = make_slug(&fp.cpu, fp.logical_cores, &fp.features);
        fp
    }

    /// Size of the largest cache, e.g. to size a buffer that must not fit in cache.
    pub fn last_level_cache_bytes(&self) -> Option<u64> {
        self.caches.iter().max_by_key(|c| (c.level, c.size_bytes)).map(|c| c.size_bytes)
    }

    pub fn feature(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(false)
    }
}

fn detect_memory() -> Option<u64> {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()))
        .ok()?;
    Some(sys.total_memory()).filter(|&b| b > 0)
}

#[cfg(target_arch = "x86_64")]
fn detect_features() -> BTreeMap<String, bool> {
    macro_rules! feats {
        ($($f:tt),*) => { [$(($f, std::arch::is_x86_feature_detected!($f))),*] };
    }
    let list = feats!(
        "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avxvnni"
    );
    list.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(target_arch = "aarch64")]
fn detect_features() -> BTreeMap<String, bool> {
    macro_rules! feats {
        ($($f:tt),*) => { [$(($f, std::arch::is_aarch64_feature_detected!($f))),*] };
    }
    let list = feats!("neon", "dotprod", "i8mm", "fp16");
    list.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect_features() -> BTreeMap<String, bool> {
    BTreeMap::new()
}

#[cfg(target_arch = "x86_64")]
fn detect_cpu(_cpuinfo: &str) -> CpuInfo {
    let id = raw_cpuid::CpuId::new();
    let vendor = id.get_vendor_info().map(|v| v.as_str().to_string());
    let brand = id.get_processor_brand_string().map(|b| b.as_str().trim().to_string());
    let fi = id.get_feature_info();
    let family = fi.as_ref().map(|f| f.family_id() as u32);
    let model = fi.as_ref().map(|f| f.model_id() as u32);
    let stepping = fi.as_ref().map(|f| f.stepping_id() as u32);
    let microarch = match (vendor.as_deref(), family, model) {
        (Some(v), Some(f), Some(m)) => x86_microarch(v, f, m).map(str::to_string),
        _ => None,
    };
    CpuInfo { vendor, brand, family, model, stepping, microarch }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_cpu(cpuinfo: &str) -> CpuInfo {
    let field = |k: &str| cpuinfo_field(cpuinfo, k);
    let num = |k: &str| field(k).and_then(|v| parse_int_auto(&v));
    let implementer = num("CPU implementer");
    let part = num("CPU part");
    let microarch = match (implementer, part) {
        (Some(i), Some(p)) => arm_part(i, p).map(str::to_string),
        _ => None,
    };
    let vendor = implementer.map(|i| arm_implementer(i).to_string()).or_else(|| field("vendor_id"));
    let brand = field("model name").or_else(|| microarch.clone());
    CpuInfo {
        vendor,
        brand,
        family: num("CPU architecture"),
        model: part,
        stepping: num("CPU revision"),
        microarch,
    }
}

/// First value of `key` in /proc/cpuinfo text (`key<tabs>: value`).
pub fn cpuinfo_field(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string()).filter(|v| !v.is_empty())
    })
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn parse_int_auto(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn arm_implementer(i: u32) -> &'static str {
    match i {
        0x41 => "ARM",
        0x51 => "Qualcomm",
        0x61 => "Apple",
        0x48 => "HiSilicon",
        0xc0 => "Ampere",
        _ => "unknown",
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn arm_part(implementer: u32, part: u32) -> Option<&'static str> {
    if implementer != 0x41 {
        return None;
    }
    Some(match part {
        0xd03 => "cortex-a53",
        0xd05 => "cortex-a55",
        0xd08 => "cortex-a72",
        0xd0a => "cortex-a75",
        0xd0b => "cortex-a76",
        0xd0d => "cortex-a77",
        0xd41 => "cortex-a78",
        0xd0c => "neoverse-n1",
        0xd40 => "neoverse-v1",
        0xd49 => "neoverse-n2",
        0xd4f => "neoverse-v2",
        _ => return None,
    })
}

/// Microarchitecture for the x86 CPUs this project is likely to meet; `None` otherwise.
pub fn x86_microarch(vendor: &str, family: u32, model: u32) -> Option<&'static str> {
    match (vendor, family) {
        ("AuthenticAMD", 0x17) => Some(if model >= 0x30 { "zen2" } else { "zen" }),
        ("AuthenticAMD", 0x19) => Some(match model {
            0x10..=0x1f | 0x60..=0xaf => "zen4",
            _ => "zen3",
        }),
        ("AuthenticAMD", 0x1a) => Some("zen5"),
        ("GenuineIntel", 6) => Some(match model {
            0x3c | 0x3f | 0x45 | 0x46 => "haswell",
            0x3d | 0x47 | 0x4f | 0x56 => "broadwell",
            0x4e | 0x5e | 0x8e | 0x9e => "skylake",
            0x55 => "skylake-sp",
            0x6a | 0x6c => "icelake-sp",
            0x7d | 0x7e => "icelake",
            0x8c | 0x8d => "tigerlake",
            0x97 | 0x9a => "alderlake",
            0xb7 | 0xba | 0xbf => "raptorlake",
            0xaa | 0xac => "meteorlake",
            0x8f => "sapphirerapids",
            0xcf => "emeraldrapids",
            0xad | 0xae => "graniterapids",
            _ => return None,
        }),
        _ => None,
    }
}

/// CPU clock: the sysfs maximum if cpufreq exists, else /proc/cpuinfo's current MHz.
fn detect_mhz(cpuinfo: &str) -> Option<(f64, String)> {
    let sysfs = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
    if let Some(khz) = std::fs::read_to_string(sysfs).ok().and_then(|s| s.trim().parse::<f64>().ok()) {
        if khz > 0.0 {
            return Some((khz / 1000.0, "sysfs cpuinfo_max_freq".into()));
        }
    }
    parse_cpuinfo_mhz(cpuinfo).map(|m| (m, "/proc/cpuinfo cpu MHz".into()))
}

/// The first positive `cpu MHz` value in /proc/cpuinfo text.
pub fn parse_cpuinfo_mhz(cpuinfo: &str) -> Option<f64> {
    cpuinfo_field(cpuinfo, "cpu MHz")?.parse::<f64>().ok().filter(|m| m.is_finite() && *m > 0.0)
}

/// Parse sysfs cache size syntax: `48K`, `2048K`, `32M`, or plain bytes.
pub fn parse_cache_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K') | (i, 'k') => (&s[..i], 1u64 << 10),
        (i, 'M') | (i, 'm') => (&s[..i], 1 << 20),
        (i, 'G') | (i, 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult).filter(|&b| b > 0)
}

/// Read the `index*` entries of a sysfs cache directory. An entry without a usable level,
/// type or size is skipped with a note; optional fields just stay empty.
pub fn parse_cache_dir(dir: &Path) -> (Vec<CacheInfo>, Vec<String>) {
    let mut notes = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            notes.push(format!("cache info unavailable: {}: {e}", dir.display()));
            return (Vec::new(), notes);
        }
    };
    let mut indexed: Vec<(u32, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let idx = name.strip_prefix("index")?.parse().ok()?;
            Some((idx, e.path()))
        })
        .collect();
    indexed.sort();
    let mut caches = Vec::new();
    for (_, path) in indexed {
        let read = |f: &str| std::fs::read_to_string(path.join(f)).ok().map(|s| s.trim().to_string());
        let level = read("level").and_then(|s| s.parse::<u8>().ok());
        let kind = read("type").filter(|s| !s.is_empty());
        let size = read("size").and_then(|s| parse_cache_size(&s));
        let (Some(level), Some(kind), Some(size_bytes)) = (level, kind, size) else {
            notes.push(format!(
                "skipped {}: missing or unparsable level/type/size",
                path.display()
            ));
            continue;
        };
        caches.push(CacheInfo {
            level,
            kind,
            size_bytes,
            line_bytes: read("coherency_line_size").and_then(|s| s.parse().ok()),
            ways: read("ways_of_associativity").and_then(|s| s.parse().ok()),
            shared_cpu_list: read("shared_cpu_list").filter(|s| !s.is_empty()),
        });
    }
    (caches, notes)
}

/// `vendor-line-microarch-Nc-isa`, lowercase ASCII, dashes only; parts that are unknown
/// are left out.
pub fn make_slug(cpu: &CpuInfo, logical_cores: usize, features: &BTreeMap<String, bool>) -> String {
    let f = |k: &str| features.get(k).copied().unwrap_or(false);
    let vendor = match cpu.vendor.as_deref() {
        Some("GenuineIntel") => Some("intel".to_string()),
        Some("AuthenticAMD") => Some("amd".to_string()),
        Some(v) => Some(v.to_string()),
        None => None,
    };
    let line = cpu.brand.as_deref().and_then(|b| brand_line(b, vendor.as_deref()));
    let isa = if f("avx512f") && f("avx512bw") && f("avx512vl") {
        "avx512"
    } else if f("avx2") && f("fma") {
        "avx2"
    } else if f("dotprod") {
        "neon-dotprod"
    } else if f("neon") {
        "neon"
    } else if f("sse4.2") {
        "sse4"
    } else {
        "scalar"
    };
    let parts = [vendor, line, cpu.microarch.clone(), Some(format!("{logical_cores}c")), Some(isa.into())];
    let joined = parts.into_iter().flatten().collect::<Vec<_>>().join("-");
    sanitize(&joined)
}

/// The product line word of a brand string: "AMD EPYC 7B13 64-Core Processor" -> "epyc".
fn brand_line(brand: &str, vendor: Option<&str>) -> Option<String> {
    const NOISE: [&str; 6] = ["(r)", "(tm)", "processor", "cpu", "amd", "intel"];
    brand
        .split(|c: char| c.is_whitespace() || c == '@')
        .map(|w| w.to_ascii_lowercase().replace("(r)", "").replace("(tm)", ""))
        .find(|w| {
            !w.is_empty()
                && !NOISE.contains(&w.as_str())
                && Some(w.as_str()) != vendor
                && w.chars().all(|c| c.is_ascii_alphabetic())
        })
}

fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes() {
        assert_eq!(parse_cache_size("48K"), Some(48 * 1024));
        assert_eq!(parse_cache_size("266240K\n"), Some(266240 * 1024));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("abcK"), None);
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("0K"), None);
    }

    #[test]
    fn mhz_from_cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2300.000\n";
        assert_eq!(parse_cpuinfo_mhz(text), Some(2300.0));
        assert_eq!(parse_cpuinfo_mhz("cpu MHz : junk\n"), None);
        assert_eq!(parse_cpuinfo_mhz(""), None);
    }

    #[test]
    fn slugs() {
        let feats: BTreeMap<String, bool> =
            [("avx2", true), ("fma", true), ("avx512f", false)].iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let cpu = CpuInfo {
            vendor: Some("AuthenticAMD".into()),
            brand: Some("AMD EPYC 7B13 64-Core Processor".into()),
            microarch: x86_microarch("AuthenticAMD", 0x19, 0x01).map(Into::into),
            ..Default::default()
        };
        assert_eq!(make_slug(&cpu, 2, &feats), "amd-epyc-zen3-2c-avx2");
        let intel = CpuInfo {
            vendor: Some("GenuineIntel".into()),
            brand: Some("Intel(R) Xeon(R) Processor".into()),
            microarch: x86_microarch("GenuineIntel", 6, 0xcf).map(Into::into),
            ..Default::default()
        };
        assert_eq!(make_slug(&intel, 4, &BTreeMap::new()), "intel-xeon-emeraldrapids-4c-scalar");
        assert_eq!(make_slug(&CpuInfo::default(), 1, &BTreeMap::new()), "1c-scalar");
    }
}
