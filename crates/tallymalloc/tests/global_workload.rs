//! tallymalloc as `#[global_allocator]` under a realistic workload: a large
//! `HashMap<String, Vec<u8>>`, sorting, string building, and threads that build, share and drop
//! collections. Checks results, not just the absence of crashes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread;

#[global_allocator]
static GLOBAL: tallymalloc::TallyMalloc = tallymalloc::TallyMalloc;

fn value_for(key: u64) -> Vec<u8> {
    let length = (key % 300) as usize;
    (0..length).map(|i| (key as usize + i) as u8).collect()
}

#[test]
fn hash_map_of_strings_to_vectors() {
    let mut map: HashMap<String, Vec<u8>> = HashMap::new();
    for key in 0..200_000u64 {
        map.insert(format!("key-{key:08}"), value_for(key));
    }
    assert_eq!(map.len(), 200_000);
    for key in (0..200_000u64).step_by(997) {
        assert_eq!(map[&format!("key-{key:08}")], value_for(key));
    }
    map.retain(|key, _| key.ends_with('7'));
    assert_eq!(map.len(), 20_000);
    let total: usize = map.values().map(Vec::len).sum();
    let expected: usize = (0..200_000u64)
        .filter(|k| k % 10 == 7)
        .map(|k| (k % 300) as usize)
        .sum();
    assert_eq!(total, expected);
}

#[test]
fn sorting_large_vectors_of_owned_strings() {
    let mut words: Vec<String> = (0..300_000u64)
        .map(|n| format!("{:x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    words.sort();
    assert!(words.windows(2).all(|pair| pair[0] <= pair[1]));
    words.dedup();
    assert_eq!(words.len(), 300_000);
    let joined = words[..1000].join(",");
    assert_eq!(joined.split(',').count(), 1000);
}

#[test]
fn threads_build_and_merge_collections() {
    let merged = Arc::new(Mutex::new(BTreeMap::<u64, String>::new()));
    let workers: Vec<_> = (0..8u64)
        .map(|worker| {
            let merged = Arc::clone(&merged);
            thread::spawn(move || {
                let mut local = Vec::new();
                for n in 0..20_000u64 {
                    let key = n * 8 + worker;
                    local.push((key, key.to_string().repeat((n % 5 + 1) as usize)));
                }
                let mut shared = merged.lock().unwrap();
                shared.extend(local);
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let merged = Arc::try_unwrap(merged).unwrap().into_inner().unwrap();
    assert_eq!(merged.len(), 160_000);
    for (key, value) in merged.iter().step_by(1013) {
        let n = key / 8;
        assert_eq!(*value, key.to_string().repeat((n % 5 + 1) as usize));
    }
    // Blocks allocated on the workers are dropped here, on another thread.
    drop(merged);
}

#[test]
fn boxed_trees_and_vectors_that_grow() {
    enum Tree {
        Leaf(u64),
        Node(Box<Tree>, Box<Tree>),
    }
    fn build(depth: u32, seed: u64) -> Tree {
        if depth == 0 {
            Tree::Leaf(seed)
        } else {
            Tree::Node(
                Box::new(build(depth - 1, seed * 2)),
                Box::new(build(depth - 1, seed * 2 + 1)),
            )
        }
    }
    fn sum(tree: &Tree) -> u64 {
        match tree {
            Tree::Leaf(value) => *value,
            Tree::Node(left, right) => sum(left) + sum(right),
        }
    }
    let tree = build(18, 1);
    let leaves = 1u64 << 18;
    assert_eq!(sum(&tree), (leaves..2 * leaves).sum::<u64>());
    let mut grown: Vec<u64> = Vec::new();
    for n in 0..5_000_000u64 {
        grown.push(n);
    }
    assert_eq!(grown.iter().sum::<u64>(), 5_000_000 * 4_999_999 / 2);
}
