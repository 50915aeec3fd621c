//! The main job for now: an allocation-heavy program on tallymalloc, with what it measured.
//!
//! ```text
//! cargo run --release --example workload [THREADS]
//! ```
//!
//! Each thread builds an index of a generated text (a `HashMap<String, Vec<u32>>` of word
//! positions), a binary tree of boxed nodes, and a sorted vector of owned strings; the threads
//! then hand their indexes to the main thread, which merges and drops them (cross-thread
//! frees). The report gives each phase's time, the resident memory when the threads finish and
//! after the data is dropped, the address space tallymalloc holds, and tallymalloc's stats
//! table (peak bytes, allocations, frees, live blocks by size class).

use std::collections::HashMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: tallymalloc::TallyMalloc = tallymalloc::TallyMalloc;

const WORDS_PER_THREAD: usize = 400_000;
const TREE_DEPTH: u32 = 17;

enum Tree {
    Leaf(u64),
    Node(Box<Tree>, Box<Tree>),
}

fn build_tree(depth: u32, seed: u64) -> Tree {
    if depth == 0 {
        Tree::Leaf(seed)
    } else {
        Tree::Node(
            Box::new(build_tree(depth - 1, seed.wrapping_mul(3))),
            Box::new(build_tree(depth - 1, seed.wrapping_add(7))),
        )
    }
}

fn tree_checksum(tree: &Tree) -> u64 {
    match tree {
        Tree::Leaf(value) => *value,
        Tree::Node(left, right) => tree_checksum(left).wrapping_add(tree_checksum(right)),
    }
}

/// A deterministic pseudo-text: words drawn from a skewed vocabulary, as real text is.
fn generate_text(seed: u64, words: usize) -> String {
    let mut state = seed | 1;
    let mut text = String::with_capacity(words * 8);
    for _ in 0..words {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let rank = (state % 1000).pow(2) / 1000; // favours small ranks
        text.push_str(&format!("w{rank:x}{} ", state % 3));
    }
    text
}

fn index_words(text: &str) -> HashMap<String, Vec<u32>> {
    let mut index: HashMap<String, Vec<u32>> = HashMap::new();
    for (position, word) in text.split_whitespace().enumerate() {
        index
            .entry(word.to_owned())
            .or_default()
            .push(position as u32);
    }
    index
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn resident() -> usize {
    tallymalloc::process_resident_bytes().unwrap_or(0)
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("THREADS must be a whole number"))
        .unwrap_or(4);
    let start_resident = resident();
    let started = Instant::now();

    let workers: Vec<_> = (0..threads as u64)
        .map(|worker| {
            std::thread::spawn(move || {
                let text = generate_text(worker + 1, WORDS_PER_THREAD);
                let index = index_words(&text);
                let tree = build_tree(TREE_DEPTH, worker + 1);
                let mut words: Vec<String> = index.keys().cloned().collect();
                words.sort();
                (index, tree_checksum(&tree), words.len())
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let built = started.elapsed();
    let built_resident = resident();

    let merge_started = Instant::now();
    let mut merged: HashMap<String, usize> = HashMap::new();
    let mut checksum = 0u64;
    let mut distinct = 0;
    for (index, tree_sum, words) in results {
        checksum = checksum.wrapping_add(tree_sum);
        distinct += words;
        for (word, positions) in index {
            *merged.entry(word).or_default() += positions.len();
        }
    }
    let total_words: usize = merged.values().sum();
    assert_eq!(
        total_words,
        threads * WORDS_PER_THREAD,
        "every word was counted"
    );
    let merged_words = merged.len();
    drop(merged);
    let merged_in = merge_started.elapsed();
    tallymalloc::collect();
    let final_resident = resident();

    println!("tallymalloc workload: {threads} threads, {WORDS_PER_THREAD} words and a depth-{TREE_DEPTH} tree each");
    println!(
        "  build: index, tree, sort            {:>8.1} ms",
        built.as_secs_f64() * 1e3
    );
    println!(
        "  merge and drop (cross-thread frees) {:>8.1} ms",
        merged_in.as_secs_f64() * 1e3
    );
    println!("  words counted {total_words}, distinct {distinct} over threads, {merged_words} merged, tree checksum {checksum:#x}");
    println!(
        "  resident at start                   {:>8.1} MiB",
        mib(start_resident)
    );
    println!(
        "  resident when the threads finished  {:>8.1} MiB",
        mib(built_resident)
    );
    println!(
        "  resident after drop and collect     {:>8.1} MiB",
        mib(final_resident)
    );
    println!(
        "  address space held now              {:>8.1} MiB",
        mib(tallymalloc::reserved_bytes())
    );
    println!(
        "  segments awaiting adoption          {:>8}",
        tallymalloc::abandoned_segments()
    );
    // The allocator's own account: every domain's live, peak and total figures, the size
    // classes still holding blocks, and what the process holds.
    println!();
    print!("{}", tallymalloc::stats_table());
}
