//! A snapshot of the accounting: the public `Stats` and its parts, merged on read from the
//! retired totals and every live heap's counters (A2), with the process figures.

use super::*;

/// Declares a group of figures once: the struct (serde both ways, for the JSON and for readers
/// of it such as the `tallymalloc` command), [`Figures::counts`] and [`Figures::flags`] to walk
/// them by name (the JSON writer in `report.rs`, the header checks in the C library's tests),
/// and `widest` (every count at `u64::MAX`). A field is named here and nowhere else in Rust.
macro_rules! figures {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$count_meta:meta])* pub $count:ident: u64, )*
            $( ; $( $(#[$flag_meta:meta])* pub $flag:ident: bool, )* )?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Default, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize,
        )]
        pub struct $name {
            $( $(#[$count_meta])* pub $count: u64, )*
            $( $( $(#[$flag_meta])* pub $flag: bool, )* )?
        }

        impl Figures for $name {
            const COUNT_NAMES: &'static [&'static str] = &[$(stringify!($count)),*];
            const FLAG_NAMES: &'static [&'static str] = &[$($(stringify!($flag)),*)?];

            fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($count), self.$count)),*].into_iter()
            }

            fn flags(&self) -> impl Iterator<Item = (&'static str, bool)> {
                [$($((stringify!($flag), self.$flag)),*)?].into_iter()
            }
        }

        impl $name {
            /// Every count at its widest and every flag `false` (the longer word in JSON).
            pub(crate) const fn widest() -> $name {
                $name {
                    $( $count: u64::MAX, )*
                    $( $( $flag: false, )* )?
                }
            }
        }
    };
}

/// A group of figures in the stats document, walked by name.
pub trait Figures {
    /// The counts' names, in the document's order.
    const COUNT_NAMES: &'static [&'static str];
    /// The flags' names, after the counts.
    const FLAG_NAMES: &'static [&'static str];
    /// Each count with its name, in the document's order.
    fn counts(&self) -> impl Iterator<Item = (&'static str, u64)>;
    /// Each flag with its name, after the counts.
    fn flags(&self) -> impl Iterator<Item = (&'static str, bool)>;
}

figures! {
    /// One domain's figures in a snapshot.
    pub struct DomainStats {
        /// Bytes of live blocks as requested. Blocks do not record their requested size outside
        /// debug mode, so there this is their usable size (see
        /// `ProcessStats::requested_sizes_exact`).
        pub live_bytes: u64,
        /// Usable bytes of live blocks (what `malloc_usable_size` says of each).
        pub live_usable_bytes: u64,
        /// The highest `live_usable_bytes` seen; low, per allocating thread, by at most 256 KiB
        /// plus one page of blocks per size class it uses, and high by what other threads freed
        /// since they last published (see the module comment).
        pub peak_bytes: u64,
        /// When the peak was reached, in milliseconds since the allocator started.
        pub peak_time_ms: u64,
        pub live_blocks: u64,
        pub allocations: u64,
        pub frees: u64,
        /// Usable bytes over all allocations (each block at its size class; requested sizes are
        /// not recorded outside debug mode, and counting them would cost the fast path).
        pub allocated_bytes: u64,
        /// Blocks of this domain freed or reallocated through another domain's family.
        pub mismatches: u64,
    }
}

figures! {
    /// Live blocks of one size class, over all domains.
    pub struct SizeClassStats {
        /// The class's block size.
        pub size: u64,
        pub live_blocks: u64,
        pub live_bytes: u64,
    }
}

figures! {
    /// Live huge blocks (beyond the largest class), over all domains.
    pub struct HugeStats {
        pub live_blocks: u64,
        pub live_bytes: u64,
    }
}

figures! {
    /// What the whole process holds.
    pub struct ProcessStats {
        /// Address space held from the OS.
        pub reserved_bytes: u64,
        /// Bytes of pages in use or waiting to be purged, and of huge mappings: what the
        /// allocator may have made resident.
        pub committed_bytes: u64,
        /// The process's resident memory (all of it, not only the allocator's), from
        /// `/proc/self/statm`.
        pub resident_bytes: u64,
        pub segments: u64,
        pub pages: u64,
        pub abandoned_segments: u64,
        pub threads_seen: u64,
        pub uptime_ms: u64,
        /// The process's id, and its parent's at start-up (or at `fork`).
        pub pid: u64,
        pub parent_pid: u64,
        ;
        /// Whether `live_bytes` counts requested sizes (debug mode) or usable ones.
        pub requested_sizes_exact: bool,
        /// Whether this build counts at all (false only in builds made to measure its cost).
        pub accounting_enabled: bool,
    }
}

/// A snapshot of every counter. Built on the stack, without allocating.
#[derive(Clone, Debug)]
pub struct Stats {
    pub version: u32,
    domains: [DomainStats; MAX_DOMAINS],
    pub size_classes: [SizeClassStats; CLASS_COUNT],
    pub huge: HugeStats,
    pub process: ProcessStats,
    /// The process's command line (cut at 256 bytes).
    pub command: CommandLine,
    /// Every domain's blocks together: their peak and when it was reached.
    all_domains_peak: (u64, u64),
}

impl Stats {
    /// The figures of `domain`.
    pub fn domain(&self, domain: Domain) -> &DomainStats {
        &self.domains[domain.id()]
    }

    /// Every registered domain with its figures, by id.
    pub fn domains(&self) -> impl Iterator<Item = (Domain, &DomainStats)> {
        Domain::all().map(move |domain| (domain, &self.domains[domain.id()]))
    }

    /// Every domain's figures added up, with their peak together (the most all of them held at
    /// once, which the domains' own peaks do not give: they peak at different times). The
    /// figures are those of every domain, registered or not; blocks of a domain that was never
    /// registered there are none.
    pub fn all_domains(&self) -> DomainStats {
        let mut total = DomainStats::default();
        for figures in &self.domains {
            total.live_bytes += figures.live_bytes;
            total.live_usable_bytes += figures.live_usable_bytes;
            total.live_blocks += figures.live_blocks;
            total.allocations += figures.allocations;
            total.frees += figures.frees;
            total.allocated_bytes += figures.allocated_bytes;
            total.mismatches += figures.mismatches;
        }
        (total.peak_bytes, total.peak_time_ms) = self.all_domains_peak;
        total
    }

    /// This snapshot with every figure at its widest (`u64::MAX`) and every size class and the
    /// huge blocks holding some: written out, it is at least as long as any later snapshot of
    /// the same domains, which is what a caller sizing a buffer needs (`stats/report.rs`).
    pub(crate) fn saturated(&self) -> Stats {
        let mut stats = self.clone();
        stats.domains = [DomainStats::widest(); MAX_DOMAINS];
        for class in &mut stats.size_classes {
            *class = SizeClassStats {
                size: class.size,
                ..SizeClassStats::widest()
            };
        }
        stats.huge = HugeStats::widest();
        stats.process = ProcessStats::widest();
        stats.command = CommandLine::widest();
        stats
    }
}

impl serde::Serialize for Stats {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct ByName<'a>(&'a Stats);
        impl serde::Serialize for ByName<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(
                    self.0
                        .domains()
                        .map(|(domain, figures)| (domain.name(), figures)),
                )
            }
        }
        let mut out = serializer.serialize_struct("Stats", 6)?;
        out.serialize_field("version", &self.version)?;
        out.serialize_field("command", &self.command.to_string_lossy())?;
        out.serialize_field("domains", &ByName(self))?;
        out.serialize_field("size_classes", &self.size_classes[..])?;
        out.serialize_field("huge", &self.huge)?;
        out.serialize_field("process", &self.process)?;
        out.end()
    }
}

/// Raw sums for one domain while a snapshot is taken.
#[derive(Clone, Copy)]
pub(super) struct Sums {
    pub(super) huge_allocations: u64,
    pub(super) huge_frees: u64,
    pub(super) huge_allocated_bytes: u64,
    pub(super) huge_freed_bytes: u64,
    pub(super) class_allocations: [u64; CLASS_COUNT],
    pub(super) class_frees: [u64; CLASS_COUNT],
}

const NO_SUMS: Sums = Sums {
    huge_allocations: 0,
    huge_frees: 0,
    huge_allocated_bytes: 0,
    huge_freed_bytes: 0,
    class_allocations: [0; CLASS_COUNT],
    class_frees: [0; CLASS_COUNT],
};

/// Reads every counter and merges them (A2). Blocks only threads that start or exit, for as
/// long as it takes to add up the live heaps' counters.
pub fn snapshot() -> Stats {
    let mut sums = [NO_SUMS; MAX_DOMAINS];
    {
        let list = ACTIVE.lock();
        for (retired, sum) in RETIRED.iter().zip(sums.iter_mut()) {
            retired.add_to(sum, &[0; CLASS_COUNT]);
        }
        let mut counters = list.counters.first();
        while !counters.is_null() {
            // SAFETY: A2: counters on the list are valid while we hold its lock.
            unsafe {
                let c = &*counters;
                c.add_to(&mut sums[c.domain.load(Ordering::Relaxed)]);
                counters = List::next(counters);
            }
        }
    }
    let mut stats = Stats {
        version: SCHEMA_VERSION,
        domains: [DomainStats::default(); MAX_DOMAINS],
        size_classes: [SizeClassStats::default(); CLASS_COUNT],
        huge: HugeStats::default(),
        process: process_stats(),
        command: CommandLine::of_this_process(),
        all_domains_peak: (0, 0),
    };
    for class in SizeClass::all() {
        stats.size_classes[class].size = class.size() as u64;
    }
    for (domain, sum) in sums.iter().enumerate() {
        let figures = &mut stats.domains[domain];
        let (mut usable, mut allocated) = (0u64, 0u64);
        for class in SizeClass::all() {
            allocated += sum.class_allocations[class] * class.size() as u64;
            // A reader may see a free before the allocation it undoes: never below zero.
            let live = sum.class_allocations[class].saturating_sub(sum.class_frees[class]);
            stats.size_classes[class].live_blocks += live;
            stats.size_classes[class].live_bytes += live * class.size() as u64;
            usable += live * class.size() as u64;
            figures.allocations += sum.class_allocations[class];
            figures.frees += sum.class_frees[class];
        }
        let huge_live = sum.huge_allocations.saturating_sub(sum.huge_frees);
        let huge_bytes = sum
            .huge_allocated_bytes
            .saturating_sub(sum.huge_freed_bytes);
        stats.huge.live_blocks += huge_live;
        stats.huge.live_bytes += huge_bytes;
        figures.allocations += sum.huge_allocations;
        figures.frees += sum.huge_frees;
        figures.live_blocks = figures.allocations.saturating_sub(figures.frees);
        figures.live_usable_bytes = usable + huge_bytes;
        figures.live_bytes = figures.live_usable_bytes;
        figures.allocated_bytes = allocated + sum.huge_allocated_bytes;
        figures.mismatches = Domain::from_id(domain).map_or(0, crate::policy::domain::mismatches);
        let shared = &SHARED[domain];
        shared.saw_live(figures.live_usable_bytes as i64);
        figures.peak_bytes = shared.peak.load(Ordering::Relaxed).max(0) as u64;
        figures.peak_time_ms = shared.peak_time_ms.load(Ordering::Relaxed);
    }
    ALL_DOMAINS.saw_live(stats.all_domains().live_usable_bytes as i64);
    stats.all_domains_peak = (
        ALL_DOMAINS.peak.load(Ordering::Relaxed).max(0) as u64,
        ALL_DOMAINS.peak_time_ms.load(Ordering::Relaxed),
    );
    stats
}

fn process_stats() -> ProcessStats {
    ProcessStats {
        reserved_bytes: os::reserved_bytes() as u64,
        committed_bytes: os::committed_bytes() as u64,
        resident_bytes: os::resident_bytes().unwrap_or(0) as u64,
        segments: crate::alloc::segment::segment_count() as u64,
        pages: crate::alloc::segment::pages_in_use() as u64,
        abandoned_segments: crate::alloc::segment::abandoned_count() as u64,
        threads_seen: THREADS_SEEN.load(Ordering::Relaxed),
        uptime_ms: uptime_millis(),
        pid: identity::pid(),
        parent_pid: identity::parent_pid(),
        requested_sizes_exact: false,
        accounting_enabled: ENABLED,
    }
}
