//! Property test of the owner buffers against a model: random sequences of creating, resizing,
//! writing and dropping `RawBuffer`s and `Buffer<u32>`s, each mirrored by a `Vec`. After every
//! step each buffer's contents equal its model's, and the domain they are accounted to holds
//! one live block per non-empty buffer; when the sequence ends and everything is dropped, the
//! domain holds nothing.

use proptest::prelude::*;
use tallymalloc::{Buffer, Domain, RawBuffer};

#[derive(Clone, Debug)]
enum Step {
    NewBytes(usize, u8),
    NewWords(usize, u32),
    Resize(usize, usize),
    Write(usize, usize, u8),
    Drop(usize),
}

fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=300,
        3 => 301usize..=70_000,
        1 => 70_001usize..=1 << 20,
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (length(), any::<u8>()).prop_map(|(len, fill)| Step::NewBytes(len, fill)),
        1 => (0usize..=20_000, any::<u32>()).prop_map(|(len, fill)| Step::NewWords(len, fill)),
        4 => (any::<usize>(), length()).prop_map(|(which, len)| Step::Resize(which, len)),
        3 => (any::<usize>(), any::<usize>(), any::<u8>())
            .prop_map(|(which, at, value)| Step::Write(which, at, value)),
        2 => any::<usize>().prop_map(Step::Drop),
    ]
}

enum Owned {
    Bytes(RawBuffer, Vec<u8>),
    Words(Buffer<u32>, Vec<u32>, u32),
}

impl Owned {
    fn check(&self) {
        match self {
            Owned::Bytes(buffer, model) => assert_eq!(buffer.as_slice(), &model[..]),
            Owned::Words(buffer, model, _) => assert_eq!(buffer.as_slice(), &model[..]),
        }
    }

    fn holds_a_block(&self) -> bool {
        match self {
            Owned::Bytes(buffer, _) => !buffer.is_empty(),
            Owned::Words(buffer, _, _) => !buffer.is_empty(),
        }
    }
}

fn live_blocks(domain: Domain) -> u64 {
    tallymalloc::stats().domain(domain).live_blocks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn buffers_behave_like_vectors(steps in proptest::collection::vec(step(), 1..60)) {
        // A domain of this test's own: other tests' threads allocate in raw, mem and obj.
        let domain = Domain::register("buffer-model").unwrap();
        let before = live_blocks(domain);
        let mut owned: Vec<Owned> = Vec::new();
        for step in steps {
            match step {
                Step::NewBytes(len, fill) => {
                    let model = vec![fill; len];
                    owned.push(Owned::Bytes(RawBuffer::from_slice(&model, domain).unwrap(), model));
                }
                Step::NewWords(len, fill) => {
                    let buffer = Buffer::filled(len, fill, domain).unwrap();
                    owned.push(Owned::Words(buffer, vec![fill; len], fill.wrapping_add(1)));
                }
                Step::Resize(which, len) if !owned.is_empty() => {
                    let index = which % owned.len();
                    match &mut owned[index] {
                        Owned::Bytes(buffer, model) => {
                            buffer.try_resize(len).unwrap();
                            model.resize(len, 0);
                        }
                        Owned::Words(buffer, model, fill) => {
                            let len = len / 4;
                            buffer.try_resize(len, *fill).unwrap();
                            model.resize(len, *fill);
                        }
                    }
                }
                Step::Write(which, at, value) if !owned.is_empty() => {
                    let index = which % owned.len();
                    match &mut owned[index] {
                        Owned::Bytes(buffer, model) if !model.is_empty() => {
                            let at = at % model.len();
                            buffer.as_mut_slice()[at] = value;
                            model[at] = value;
                        }
                        Owned::Words(buffer, model, _) if !model.is_empty() => {
                            let at = at % model.len();
                            buffer.as_mut_slice()[at] = u32::from(value) << 8;
                            model[at] = u32::from(value) << 8;
                        }
                        _ => {}
                    }
                }
                Step::Drop(which) if !owned.is_empty() => {
                    owned.swap_remove(which % owned.len());
                }
                _ => {}
            }
            owned.iter().for_each(Owned::check);
            let holding = owned.iter().filter(|buffer| buffer.holds_a_block()).count() as u64;
            prop_assert_eq!(live_blocks(domain) - before, holding);
        }
        drop(owned);
        prop_assert_eq!(live_blocks(domain), before);
    }
}
