//! Threads that exit with live blocks leave their segments for others to adopt: 1,000
//! short-lived threads each allocate blocks that another thread frees after they exit. Resident
//! memory must stay bounded (the memory is reused), and once everything is freed and collected
//! no segment is left abandoned.

use std::sync::mpsc;
use std::thread;

const THREADS: usize = 1000;
const BLOCKS_PER_THREAD: usize = 256;
const BLOCK_SIZE: usize = 1024;

fn resident() -> usize {
    tallymalloc::process_resident_bytes().expect("/proc/self/statm")
}

#[test]
fn memory_left_by_exited_threads_is_reused_and_nothing_leaks() {
    let (sender, receiver) = mpsc::channel::<Vec<usize>>();
    let freer = thread::spawn(move || {
        for blocks in receiver {
            for address in blocks {
                // SAFETY: a live block handed over by its (now exited) allocating thread.
                unsafe {
                    assert_eq!(*(address as *const u8), 0xA5);
                    tallymalloc::free(address as *mut u8);
                }
            }
        }
    });
    let mut resident_after_warm_up = 0;
    for round in 0..THREADS {
        let sender = sender.clone();
        thread::spawn(move || {
            let blocks: Vec<usize> = (0..BLOCKS_PER_THREAD)
                .map(|_| {
                    let block = tallymalloc::malloc(BLOCK_SIZE).expect("malloc");
                    // SAFETY: a fresh block of BLOCK_SIZE bytes.
                    unsafe { std::ptr::write_bytes(block.as_ptr(), 0xA5, BLOCK_SIZE) };
                    block.as_ptr() as usize
                })
                .collect();
            sender.send(blocks).unwrap();
        })
        .join()
        .unwrap();
        if round == 50 {
            resident_after_warm_up = resident();
        }
    }
    drop(sender);
    freer.join().unwrap();
    let allocated_in_total = THREADS * BLOCKS_PER_THREAD * BLOCK_SIZE; // 256 MiB
    let growth = resident().saturating_sub(resident_after_warm_up);
    assert!(
        growth < 32 << 20,
        "resident memory grew by {} MiB over {} MiB allocated by exited threads",
        growth >> 20,
        allocated_in_total >> 20
    );
    tallymalloc::collect();
    assert_eq!(tallymalloc::abandoned_segments(), 0);
    assert!(
        tallymalloc::reserved_bytes() < 64 << 20,
        "{} MiB still reserved after everything was freed",
        tallymalloc::reserved_bytes() >> 20
    );
}
