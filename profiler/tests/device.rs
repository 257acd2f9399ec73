//! Device fingerprint and perf counters on this machine, and sysfs cache parsing on fixtures.

use profiler::counters::{probe, CounterKind, CounterName, CounterSet};
use profiler::device::{parse_cache_dir, DeviceFingerprint};
use std::fs;
use std::path::Path;

#[test]
fn fingerprint_builds_here_and_round_trips() {
    let fp = DeviceFingerprint::detect();
    assert!(fp.logical_cores >= 1);
    assert_eq!(fp.arch, std::env::consts::ARCH);
    assert!(!fp.slug.is_empty());
    assert!(fp.slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{}", fp.slug);
    assert!(fp.slug.contains(&format!("{}c", fp.logical_cores)));
    assert!(fp.kernel_isas.contains(&"scalar".to_string()));
    assert_eq!(fp.counters.len(), CounterName::ALL.len());
    if cfg!(target_os = "linux") {
        assert!(fp.memory_bytes.unwrap_or(0) > 0, "memory not detected: {:?}", fp.notes);
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert!(fp.features.contains_key("avx2"));
        assert_eq!(fp.feature("avx2"), std::arch::is_x86_feature_detected!("avx2"));
    }
    #[cfg(target_arch = "aarch64")]
    assert_eq!(fp.feature("neon"), std::arch::is_aarch64_feature_detected!("neon"));

    let json = serde_json::to_string(&fp).unwrap();
    let back: DeviceFingerprint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, fp);
}

#[test]
fn fingerprint_has_no_hostname() {
    let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") else {
        println!("skipping: no /proc/sys/kernel/hostname");
        return;
    };
    let host = host.trim();
    if host.len() < 4 {
        println!("skipping: hostname `{host}` too short to search for");
        return;
    }
    let json = serde_json::to_string(&DeviceFingerprint::detect()).unwrap();
    assert!(!json.contains(host), "fingerprint leaks the hostname");
}

#[test]
fn software_counters_available_and_hardware_reported() {
    let statuses = probe();
    for s in &statuses {
        assert_eq!(s.available, s.reason.is_none(), "{s:?}");
    }
    if !cfg!(target_os = "linux") {
        return;
    }
    let task_clock = statuses.iter().find(|s| s.name == CounterName::TaskClock).unwrap();
    // Not permitted (EPERM/EACCES: perf_event_paranoid without privileges) or no
    // perf_event_open at all (ENOSYS, e.g. under qemu-user): nothing to check here.
    let refused = ["(os error 1)", "(os error 13)", "(os error 38)"];
    if task_clock.reason.as_deref().is_some_and(|r| refused.iter().any(|e| r.contains(e))) {
        println!("skipping availability check: {task_clock:?}");
        return;
    }
    assert!(task_clock.available, "{task_clock:?}");
    assert!(statuses
        .iter()
        .filter(|s| s.kind == CounterKind::Software)
        .any(|s| s.name == CounterName::PageFaults && s.available));
}

#[test]
fn counter_set_measures_deltas() {
    let mut set = CounterSet::open(&[CounterName::TaskClock, CounterName::PageFaults, CounterName::Cycles]);
    // Every requested counter is either open or reported with a reason.
    assert_eq!(set.names().len() + set.unavailable().len(), 3);
    assert!(set.unavailable().iter().all(|s| s.reason.as_deref().is_some_and(|r| !r.is_empty())));
    if !set.names().contains(&CounterName::TaskClock) {
        println!("skipping: task-clock unavailable here");
        return;
    }
    let (sum, r) = set
        .measure(|| {
            // Touch fresh pages (page faults) and burn some CPU (task-clock).
            let v = vec![1u8; 8 << 20];
            let mut s = 0u64;
            for i in (0..v.len()).step_by(4096) {
                s = s.wrapping_add(std::hint::black_box(v[i]) as u64);
            }
            s
        })
        .unwrap();
    assert_eq!(sum, (8 << 20) / 4096);
    assert!(r.get(CounterName::TaskClock).unwrap() > 0);
    if let Some(pf) = r.get(CounterName::PageFaults) {
        assert!(pf > 0, "touching 8 MiB of fresh memory caused no page faults");
    }
    // A second, empty region reads a small delta, not a running total.
    let (_, r2) = set.measure(|| ()).unwrap();
    assert!(r2.get(CounterName::TaskClock).unwrap() < r.get(CounterName::TaskClock).unwrap());
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn cache_fixture_parses_good_entries_and_skips_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        &root.join("index0"),
        &[
            ("level", "1\n"),
            ("type", "Data\n"),
            ("size", "48K\n"),
            ("coherency_line_size", "64\n"),
            ("ways_of_associativity", "12\n"),
            ("shared_cpu_list", "0\n"),
        ],
    );
    // Optional files missing or garbled: kept, with those fields empty.
    write(&root.join("index2"), &[("level", "2"), ("type", "Unified"), ("size", "2048K"), ("coherency_line_size", "sixty-four")]);
    // Garbled size: skipped with a note.
    write(&root.join("index3"), &[("level", "3"), ("type", "Unified"), ("size", "lots")]);
    // Missing level: skipped with a note.
    write(&root.join("index1"), &[("type", "Instruction"), ("size", "32K")]);
    // Not an index directory: ignored.
    write(&root.join("power"), &[("level", "9")]);
    // index10 sorts after index2 numerically, not lexically.
    write(&root.join("index10"), &[("level", "3"), ("type", "Unified"), ("size", "32M")]);

    let (caches, notes) = parse_cache_dir(root);
    let levels: Vec<(u8, u64)> = caches.iter().map(|c| (c.level, c.size_bytes)).collect();
    assert_eq!(levels, vec![(1, 48 << 10), (2, 2 << 20), (3, 32 << 20)]);
    assert_eq!(caches[0].line_bytes, Some(64));
    assert_eq!(caches[0].ways, Some(12));
    assert_eq!(caches[0].shared_cpu_list.as_deref(), Some("0"));
    assert_eq!(caches[1].kind, "Unified");
    assert_eq!(caches[1].line_bytes, None);
    assert_eq!(caches[1].shared_cpu_list, None);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("index3")) && notes.iter().any(|n| n.contains("index1")));
}

#[test]
fn cache_dir_missing_is_a_note_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let (caches, notes) = parse_cache_dir(&tmp.path().join("nope"));
    assert!(caches.is_empty());
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("nope"));
}
