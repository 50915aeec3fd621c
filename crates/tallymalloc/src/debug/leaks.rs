//! Debug mode's leak reports: what is still live, by domain and by allocation site with the
//! sites' stacks, on stderr now or at exit, and as JSON to `TALLYMALLOC_REPORT` at exit.

use super::*;

/// Live debug blocks and their bytes, by domain, for the leak summary.
fn live_by_domain(mut visit: impl FnMut(usize, u64, u64)) {
    let mut blocks = [0u64; crate::policy::domain::MAX_DOMAINS];
    let mut bytes = [0u64; crate::policy::domain::MAX_DOMAINS];
    super::lists::for_each_live(|header| {
        // SAFETY: D3.
        unsafe {
            let domain = Domain::from_stored((*header).domain);
            blocks[domain] += 1;
            bytes[domain] += (*header).size as u64;
        }
    });
    for domain in 0..crate::policy::domain::MAX_DOMAINS {
        if blocks[domain] > 0 {
            visit(domain, blocks[domain], bytes[domain]);
        }
    }
}

/// At exit: checks guards and poison, and prints what is still live by domain.
pub(super) fn report_at_exit() {
    if MODE.load(Ordering::Acquire) != ON {
        return;
    }
    check_all();
    let total = report_leaks(b"at exit");
    let (sites, stack_bytes) = crate::platform::unwind::sites::usage();
    let mut line = Line::new();
    line.text(b"tallymalloc debug: at exit: ")
        .decimal(total.0)
        .text(b" blocks (")
        .decimal(total.1)
        .text(b" bytes) live, ")
        .decimal(error_count())
        .text(b" errors found; its own memory: ")
        .decimal(sites as u64)
        .text(b" distinct stacks in ")
        .decimal(stack_bytes as u64)
        .text(b" bytes, ")
        .decimal(super::lists::quarantined_bytes() as u64)
        .text(b" bytes of freed blocks in quarantine, ")
        .decimal(total.0 * (HEADER + GUARD) as u64)
        .text(b" bytes of headers and guards on the live blocks\n");
    line.write_to_stderr();
}

/// Lists the blocks live now by domain and by allocation site (`tm_leak_report`, and at exit,
/// where `when` is "at exit"); returns their count and bytes. Nothing outside debug mode.
pub fn report_leaks(when: &[u8]) -> (u64, u64) {
    if MODE.load(Ordering::Acquire) != ON {
        return (0, 0);
    }
    let mut total = (0u64, 0u64);
    live_by_domain(|domain, blocks, bytes| {
        total = (total.0 + blocks, total.1 + bytes);
        let mut line = Line::new();
        line.text(b"tallymalloc debug: leak: ")
            .decimal(blocks)
            .text(b" blocks, ")
            .decimal(bytes)
            .text(b" bytes still live ")
            .text(when)
            .text(b" in domain ")
            .text(Domain::from_id(domain).map_or("?", Domain::name).as_bytes())
            .text(b"\n");
        line.write_to_stderr();
    });
    report_leak_sites(when == b"at exit");
    total
}

/// The sites with the most bytes still live, largest first, each with its stack; also as JSON
/// to `TALLYMALLOC_REPORT` at exit.
fn report_leak_sites(at_exit: bool) {
    const SHOWN: usize = 20;
    let slots = crate::platform::unwind::sites::CAPACITY + 1;
    // Two counters a site (blocks, bytes), in memory of our own: nothing here may allocate.
    let Some(memory) = crate::platform::os::reserve_metadata(slots * 16) else {
        return;
    };
    let counts = memory.as_ptr().cast::<[u64; 2]>();
    super::lists::for_each_live(|header| {
        // SAFETY: D3; `site <= CAPACITY` indexes the fresh, zeroed mapping.
        unsafe {
            if (*header).site != ALLOCATOR_SITE {
                let site = ((*header).site as usize).min(slots - 1);
                (*counts.add(site))[0] += 1;
                (*counts.add(site))[1] += (*header).size as u64;
            }
        }
    });
    // The largest sites, by selection (SHOWN passes over the sites).
    let mut top = [(0usize, 0u64, 0u64); SHOWN];
    let mut shown = 0;
    while shown < SHOWN {
        let mut best: Option<(usize, u64)> = None;
        for site in 0..slots {
            // SAFETY: inside the mapping.
            let bytes = unsafe { (*counts.add(site))[1] };
            if bytes > 0 && best.is_none_or(|(_, most)| bytes > most) {
                best = Some((site, bytes));
            }
        }
        let Some((site, bytes)) = best else { break };
        // SAFETY: inside the mapping; the site is taken out of the running.
        unsafe {
            top[shown] = (site, (*counts.add(site))[0], bytes);
            (*counts.add(site))[1] = 0;
        }
        shown += 1;
    }
    // SAFETY: the mapping is ours and no longer used.
    unsafe { crate::platform::os::release(memory, slots * 16) };
    for (rank, &(site, blocks, bytes)) in top[..shown].iter().enumerate() {
        let mut line = Line::new();
        line.text(b"tallymalloc debug: leak site ")
            .decimal(rank as u64 + 1)
            .text(b": ")
            .decimal(blocks)
            .text(b" blocks, ")
            .decimal(bytes)
            .text(b" bytes, allocated at:\n");
        line.write_to_stderr();
        if let Some(stack) = crate::platform::unwind::sites::stack(site as u32) {
            crate::debug::backtrace::print(&crate::debug::backtrace::outside_allocator(&stack));
        }
    }
    let path = crate::policy::options::report_path();
    if at_exit && !path.is_empty() {
        write_leak_json(path, &top[..shown]);
    }
}

/// `TALLYMALLOC_REPORT`: `{"version": 1, "errors": N, "sites": [{"blocks", "bytes", "stack":
/// [{"address", "function", "location"}]}]}`, largest site first.
fn write_leak_json(pattern: &[u8], top: &[(usize, u64, u64)]) {
    use crate::stats::report::{FdSink, Sink};
    let Some(file) = crate::stats::exit_report::ReportFile::create(pattern, b"the leak report")
    else {
        return;
    };
    {
        let mut sink = FdSink::new(file.fd());
        let mut digits = [0u8; 20];
        let mut number = |sink: &mut FdSink, value: u64| {
            sink.put(crate::platform::text::decimal_digits(value, &mut digits));
        };
        sink.put(b"{\"version\": 1, \"errors\": ");
        number(&mut sink, error_count());
        sink.put(b", \"sites\": [");
        for (index, &(site, blocks, bytes)) in top.iter().enumerate() {
            sink.put(if index == 0 {
                b"\n  {\"blocks\": "
            } else {
                b",\n  {\"blocks\": "
            });
            number(&mut sink, blocks);
            sink.put(b", \"bytes\": ");
            number(&mut sink, bytes);
            sink.put(b", \"stack\": [");
            let stack = crate::platform::unwind::sites::stack(site as u32)
                .map(|s| crate::debug::backtrace::outside_allocator(&s))
                .unwrap_or(crate::debug::backtrace::Stack::EMPTY);
            crate::debug::backtrace::describe_each(&stack, |frame_index, address, frame| {
                sink.put(if frame_index == 0 {
                    b"{\"address\": "
                } else {
                    b", {\"address\": "
                });
                number(&mut sink, address as u64);
                sink.put(b", \"function\": ");
                crate::stats::report::json_string(&mut sink, frame.function);
                sink.put(b", \"location\": ");
                crate::stats::report::json_string(&mut sink, frame.place);
                sink.put(b"}");
            });
            sink.put(b"]}");
        }
        sink.put(b"\n]}\n");
    }
    file.finish();
}
