//! Buffer planning: tensors whose lifetimes (in the step's schedule) do not overlap share a slot.

/// A tensor to place: its size in words and the first and last times it is alive.
#[derive(Clone, Copy, Debug)]
pub struct Life {
    pub words: usize,
    pub def: usize,
    pub last: usize,
}

/// Assigns each tensor a slot so that tensors sharing a slot never overlap in time (a tensor
/// defined at the time another is last read does not share with it: one kernel reads the one and
/// writes the other). Returns (slot of each tensor, size of each slot in words).
pub fn assign(lives: &[Life], share: bool) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..lives.len()).collect();
    order.sort_by_key(|&i| (lives[i].def, std::cmp::Reverse(lives[i].words)));
    let mut slot_of = vec![usize::MAX; lives.len()];
    let mut slots: Vec<(usize, usize)> = Vec::new(); // (busy until, words)
    for i in order {
        let l = lives[i];
        let free = share.then(|| {
            // Best fit: the free slot whose size is closest to what is needed, preferring ones large enough.
            (0..slots.len()).filter(|&s| slots[s].0 < l.def).min_by_key(|&s| {
                let w = slots[s].1;
                if w >= l.words {
                    (0, w - l.words)
                } else {
                    (1, l.words - w)
                }
            })
        });
        let s = match free.flatten() {
            Some(s) => s,
            None => {
                slots.push((0, 0));
                slots.len() - 1
            }
        };
        slots[s].0 = l.last;
        slots[s].1 = slots[s].1.max(l.words);
        slot_of[i] = s;
    }
    (slot_of, slots.into_iter().map(|s| s.1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_lifetimes_share_and_overlapping_do_not() {
        let lives = [
            Life { words: 10, def: 0, last: 2 },
            Life { words: 5, def: 1, last: 3 },
            Life { words: 8, def: 3, last: 4 }, // may take slot 0 (free after 2), not slot 1 (last read at 3)
        ];
        let (slot, sizes) = assign(&lives, true);
        assert_eq!(slot, vec![0, 1, 0]);
        assert_eq!(sizes, vec![10, 5]);
        let (slot, sizes) = assign(&lives, false);
        assert_eq!(slot, vec![0, 1, 2]);
        assert_eq!(sizes, vec![10, 5, 8]);
    }
}
