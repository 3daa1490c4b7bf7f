//! A check that runs before unpickling: it walks a pickle's opcodes without building anything and
//! counts the values unpickling would create, memo references included (serde-pickle resolves them
//! by cloning, so a small file of nested references can expand to gigabytes: fuzzing found a
//! 1.1 KB pickle that did). Unsupported opcodes (persistent ids, extension registry, out-of-band
//! buffers) and expansions past a budget are errors naming the offset.

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Values an unpickled CIFAR-10 batch may create: a batch is a dict of a few lists and one array
/// of 30 MB; a million values and 256 MiB of strings leave room for any honest batch file.
pub const MAX_VALUES: u64 = 1 << 20;
pub const MAX_BYTES: u64 = 256 << 20;

const MARK: u64 = u64::MAX;

struct Scan<'a> {
    path: &'a Path,
    data: &'a [u8],
    at: usize,
    stack: Vec<u64>,
    memo: HashMap<u64, u64>,
    values: u64,
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
    fn push(&mut self, size: u64) -> Result<()> {
        self.values = self.values.saturating_add(size);
        if self.values > MAX_VALUES {
            return Err(self.err(format!("it would create more than {MAX_VALUES} values (nested memo references?)")));
        }
        self.stack.push(size);
        Ok(())
    }
    fn pop(&mut self) -> Result<u64> {
        match self.stack.pop() {
            Some(MARK) | None => Err(self.err("stack underflow")),
            Some(v) => Ok(v),
        }
    }
    /// Pops down to the last mark; returns the summed sizes.
    fn pop_mark(&mut self) -> Result<u64> {
        let mut sum = 0u64;
        loop {
            match self.stack.pop() {
                None => return Err(self.err("no mark")),
                Some(MARK) => return Ok(sum),
                Some(v) => sum = sum.saturating_add(v),
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
        self.push(1)
    }
    fn grow_top(&mut self, by: u64) -> Result<()> {
        let top = self.pop()?;
        self.push(top.saturating_add(by))
    }
    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = *self.stack.last().filter(|&&v| v != MARK).ok_or_else(|| self.err("memo put of nothing"))?;
        self.memo.insert(key, top);
        Ok(())
    }
    fn memo_get(&mut self, key: u64) -> Result<()> {
        let size = *self.memo.get(&key).ok_or_else(|| self.err(format!("memo key {key} was never put")))?;
        self.push(size)
    }
    fn text_number(&mut self) -> Result<u64> {
        let l = self.line()?;
        std::str::from_utf8(l).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| self.err("bad memo key"))
    }
}

/// Errors for pickles unpickling would choke on; Ok for anything the unpickler may safely try.
pub fn check(path: &Path, data: &[u8]) -> Result<()> {
    let mut s = Scan { path, data, at: 0, stack: Vec::new(), memo: HashMap::new(), values: 0, bytes: 0 };
    loop {
        let op = *s.take(1)?.first().unwrap_or(&0);
        match op {
            b'.' => return Ok(()),
            b'(' => s.stack.push(MARK),
            b'0' => drop(s.pop()?),
            b'1' => drop(s.pop_mark()?),
            b'2' => {
                let top = s.pop()?;
                s.push(top)?;
                s.push(top)?
            }
            b'}' | b']' | b')' | b'N' | 0x88 | 0x89 | 0x8f => s.push(1)?,
            b'a' => {
                let v = s.pop()?;
                s.grow_top(v)?
            }
            b'e' | b'u' | 0x90 => {
                let sum = s.pop_mark()?;
                s.grow_top(sum)?
            }
            b's' => {
                let (v, k) = (s.pop()?, s.pop()?);
                s.grow_top(v.saturating_add(k))?
            }
            b't' | b'l' | b'd' | 0x91 => {
                let sum = s.pop_mark()?;
                s.push(sum.saturating_add(1))?
            }
            0x85 => {
                let a = s.pop()?;
                s.push(a + 1)?
            }
            0x86 => {
                let (a, b) = (s.pop()?, s.pop()?);
                s.push(a.saturating_add(b).saturating_add(1))?
            }
            0x87 => {
                let (a, b, c) = (s.pop()?, s.pop()?, s.pop()?);
                s.push(a.saturating_add(b).saturating_add(c).saturating_add(1))?
            }
            b'R' | b'b' | 0x81 | 0x93 => {
                let (a, b) = (s.pop()?, s.pop()?);
                s.push(a.saturating_add(b))?
            }
            0x92 => {
                let (a, b, c) = (s.pop()?, s.pop()?, s.pop()?);
                s.push(a.saturating_add(b).saturating_add(c))?
            }
            b'o' => {
                let sum = s.pop_mark()?;
                s.push(sum.saturating_add(1))?
            }
            0x94 => {
                let key = s.memo.len() as u64;
                s.memo_put(key)?
            }
            b'K' => {
                s.take(1)?;
                s.push(1)?
            }
            b'M' => {
                s.take(2)?;
                s.push(1)?
            }
            b'J' => {
                s.take(4)?;
                s.push(1)?
            }
            b'G' => {
                s.take(8)?;
                s.push(1)?
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
                s.push(1)?
            }
            b'i' => {
                s.line()?;
                s.line()?;
                let sum = s.pop_mark()?;
                s.push(sum.saturating_add(1))?
            }
            b'I' | b'L' | b'F' | b'S' | b'V' => {
                let n = s.line()?.len() as u64;
                s.bytes = s.bytes.saturating_add(n);
                s.push(1)?
            }
            other => return Err(s.err(format!("unsupported opcode {other:#04x}"))),
        }
    }
}
