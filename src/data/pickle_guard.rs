//! A check that runs before unpickling: it walks a pickle's opcodes without building any value,
//! keeps the shape of what unpickling would build (which container holds which objects, shared
//! through the memo as Python shares them), and counts the values the result expands to when every
//! memo reference becomes a copy, as serde-pickle makes it. Containers memoized before they are
//! filled (how Python writes lists) are counted at their final size: a 400 KB file of references to
//! a list filled after it was memoized would otherwise expand to 10^10 values. Unsupported opcodes
//! (persistent ids, extension registry, out-of-band buffers), cycles and expansions past a budget
//! are errors naming the offset.

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Values an unpickled CIFAR-10 batch may create: a batch is a dict of a few lists and one array
/// of 30 MB; a million values and 256 MiB of strings leave room for any honest batch file.
pub const MAX_VALUES: u64 = 1 << 20;
pub const MAX_BYTES: u64 = 256 << 20;

/// A stack entry: a mark, or an object (an index into `Scan::nodes`).
const MARK: usize = usize::MAX;

/// What unpickling builds: a value counting `own` values itself (a scalar or a container: 1) and
/// holding other objects.
#[derive(Default)]
struct Node {
    own: u64,
    children: Vec<usize>,
}

struct Scan<'a> {
    path: &'a Path,
    data: &'a [u8],
    at: usize,
    stack: Vec<usize>,
    nodes: Vec<Node>,
    memo: HashMap<u64, usize>,
    /// Every object a memo reference copies, once per reference.
    copies: Vec<usize>,
    bytes: u64,
}

impl<'a> Scan<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::file(self.path, format!("not a readable pickle: {msg} at offset {}", self.at))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| self.err("truncated"))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> Result<u64> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |a, &b| (a << 8) | b as u64))
    }
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.data[self.at..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated text argument"))?;
        self.at += n + 1;
        Ok(&rest[..n])
    }
    /// Pushes a new object holding `children`.
    fn new_node(&mut self, children: Vec<usize>) {
        self.nodes.push(Node { own: 1, children });
        self.stack.push(self.nodes.len() - 1);
    }
    fn pop(&mut self) -> Result<usize> {
        match self.stack.pop() {
            Some(MARK) | None => Err(self.err("stack underflow")),
            Some(v) => Ok(v),
        }
    }
    /// Pops down to the last mark; returns the objects above it, oldest first.
    fn pop_mark(&mut self) -> Result<Vec<usize>> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                None => return Err(self.err("no mark")),
                Some(MARK) => {
                    items.reverse();
                    return Ok(items);
                }
                Some(v) => items.push(v),
            }
        }
    }
    fn string(&mut self, n: u64) -> Result<()> {
        let n = usize::try_from(n).map_err(|_| self.err("string too long"))?;
        self.take(n)?;
        self.bytes = self.bytes.saturating_add(n as u64);
        if self.bytes > MAX_BYTES {
            return Err(self.err(format!("it holds more than {MAX_BYTES} bytes of strings")));
        }
        self.new_node(Vec::new());
        Ok(())
    }
    /// Adds objects to the container on top of the stack (it stays there).
    fn extend_top(&mut self, items: Vec<usize>) -> Result<()> {
        let top = *self.stack.last().filter(|&&v| v != MARK).ok_or_else(|| self.err("append to nothing"))?;
        self.nodes[top].children.extend(items);
        Ok(())
    }
    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = *self.stack.last().filter(|&&v| v != MARK).ok_or_else(|| self.err("memo put of nothing"))?;
        self.memo.insert(key, top);
        Ok(())
    }
    fn memo_get(&mut self, key: u64) -> Result<()> {
        let id = *self.memo.get(&key).ok_or_else(|| self.err(format!("memo key {key} was never put")))?;
        self.copies.push(id);
        self.stack.push(id);
        Ok(())
    }
    fn text_number(&mut self) -> Result<u64> {
        let l = self.line()?;
        std::str::from_utf8(l).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| self.err("bad memo key"))
    }

    /// Values object `id` expands to with every shared object copied, up to the budget; an error
    /// for a structure that contains itself.
    fn expanded(&self, id: usize, sizes: &mut HashMap<usize, Option<u64>>) -> Result<u64> {
        // Iterative post-order: None marks an object being expanded (a cycle if met again).
        let mut todo = vec![(id, false)];
        while let Some((n, done)) = todo.pop() {
            if done {
                let total = self.nodes[n]
                    .children
                    .iter()
                    .fold(self.nodes[n].own, |t, c| t.saturating_add(sizes[c].unwrap_or(u64::MAX)));
                sizes.insert(n, Some(total.min(MAX_VALUES + 1)));
                continue;
            }
            match sizes.get(&n) {
                Some(Some(_)) => continue,
                Some(None) => return Err(self.err("it builds a structure that contains itself")),
                None => {}
            }
            sizes.insert(n, None);
            todo.push((n, true));
            for &c in &self.nodes[n].children {
                match sizes.get(&c) {
                    Some(Some(_)) => {}
                    Some(None) => return Err(self.err("it builds a structure that contains itself")),
                    None => todo.push((c, false)),
                }
            }
        }
        Ok(sizes[&id].unwrap_or(u64::MAX))
    }

    /// At STOP: the result's expanded size plus every memo copy's, against the budget.
    fn finish(&self) -> Result<()> {
        let root = *self.stack.last().filter(|&&v| v != MARK).ok_or_else(|| self.err("nothing to return"))?;
        let mut sizes = HashMap::new();
        let mut total = self.expanded(root, &mut sizes)?;
        for &c in &self.copies {
            total = total.saturating_add(self.expanded(c, &mut sizes)?);
            if total > MAX_VALUES {
                break;
            }
        }
        if total > MAX_VALUES {
            return Err(self
                .err(format!("it would create more than {MAX_VALUES} values (memo references copy what they name)")));
        }
        Ok(())
    }
}

/// Errors for pickles unpickling would choke on; Ok for anything the unpickler may safely try.
pub fn check(path: &Path, data: &[u8]) -> Result<()> {
    let mut s = Scan {
        path,
        data,
        at: 0,
        stack: Vec::new(),
        nodes: Vec::new(),
        memo: HashMap::new(),
        copies: Vec::new(),
        bytes: 0,
    };
    loop {
        let op = *s.take(1)?.first().unwrap_or(&0);
        match op {
            b'.' => return s.finish(),
            b'(' => s.stack.push(MARK),
            b'0' => drop(s.pop()?),
            b'1' => drop(s.pop_mark()?),
            b'2' => {
                let top = s.pop()?;
                s.copies.push(top);
                s.stack.extend([top, top]);
            }
            b'}' | b']' | b')' | b'N' | 0x88 | 0x89 | 0x8f => s.new_node(Vec::new()),
            b'a' => {
                let v = s.pop()?;
                s.extend_top(vec![v])?
            }
            b'e' | b'u' | 0x90 => {
                let items = s.pop_mark()?;
                s.extend_top(items)?
            }
            b's' => {
                let (v, k) = (s.pop()?, s.pop()?);
                s.extend_top(vec![k, v])?
            }
            b't' | b'l' | b'd' | 0x91 | b'o' => {
                let items = s.pop_mark()?;
                s.new_node(items)
            }
            0x85 => {
                let a = s.pop()?;
                s.new_node(vec![a])
            }
            0x86 => {
                let (b, a) = (s.pop()?, s.pop()?);
                s.new_node(vec![a, b])
            }
            0x87 => {
                let (c, b, a) = (s.pop()?, s.pop()?, s.pop()?);
                s.new_node(vec![a, b, c])
            }
            b'R' | b'b' | 0x81 | 0x93 => {
                let (b, a) = (s.pop()?, s.pop()?);
                s.new_node(vec![a, b])
            }
            0x92 => {
                let (c, b, a) = (s.pop()?, s.pop()?, s.pop()?);
                s.new_node(vec![a, b, c])
            }
            0x94 => {
                let key = s.memo.len() as u64;
                s.memo_put(key)?
            }
            b'K' => {
                s.take(1)?;
                s.new_node(Vec::new())
            }
            b'M' => {
                s.take(2)?;
                s.new_node(Vec::new())
            }
            b'J' => {
                s.take(4)?;
                s.new_node(Vec::new())
            }
            b'G' => {
                s.take(8)?;
                s.new_node(Vec::new())
            }
            0x80 => drop(s.take(1)?),
            0x95 => drop(s.take(8)?),
            b'q' => {
                let k = s.uint(1)?;
                s.memo_put(k)?
            }
            b'r' => {
                let k = s.uint(4)?;
                s.memo_put(k)?
            }
            b'p' => {
                let k = s.text_number()?;
                s.memo_put(k)?
            }
            b'h' => {
                let k = s.uint(1)?;
                s.memo_get(k)?
            }
            b'j' => {
                let k = s.uint(4)?;
                s.memo_get(k)?
            }
            b'g' => {
                let k = s.text_number()?;
                s.memo_get(k)?
            }
            b'U' | b'C' | 0x8c | 0x8a => {
                let n = s.uint(1)?;
                s.string(n)?
            }
            b'T' | b'B' | b'X' | 0x8b => {
                let n = s.uint(4)?;
                s.string(n)?
            }
            0x8e | 0x8d => {
                let n = s.uint(8)?;
                s.string(n)?
            }
            b'c' => {
                s.line()?;
                s.line()?;
                s.new_node(Vec::new())
            }
            b'i' => {
                s.line()?;
                s.line()?;
                let items = s.pop_mark()?;
                s.new_node(items)
            }
            b'I' | b'L' | b'F' | b'S' | b'V' => {
                let n = s.line()?.len() as u64;
                s.bytes = s.bytes.saturating_add(n);
                s.new_node(Vec::new())
            }
            other => return Err(s.err(format!("unsupported opcode {other:#04x}"))),
        }
    }
}
