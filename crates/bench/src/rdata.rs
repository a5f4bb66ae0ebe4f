//! Reads character vectors out of an R lazy-load database (`Rdata.rdb` + `Rdata.rdx`, as in
//! Debian's `r-cran-janeaustenr`) without R.
//!
//! - `Rdata.rdx` is a gzip stream of an R serialization: a list with `variables`, a named list
//!   of `c(offset, length)` integer pairs into the `.rdb`.
//! - `Rdata.rdb` is a run of records: a 4-byte big-endian length (of the uncompressed data) and
//!   a zlib stream of one serialized object.
//! - The serialization is R's XDR format (`X\n`, versions 2 and 3): a flags word per item
//!   (type in the low byte, has-attributes 1<<9, has-tag 1<<10), then the item.
//!
//! Only what data packages of text hold is read: character, integer, logical and real vectors,
//! lists, pairlists, symbols and references to symbols. Anything else is an error naming it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// One R value, as far as text data needs.
#[derive(Debug, Clone, PartialEq)]
pub enum RValue {
    Null,
    /// Character vector; `None` for `NA`.
    Str(Vec<Option<String>>),
    Int(Vec<i32>),
    Real(Vec<f64>),
    List(Vec<RValue>, Option<Vec<String>>),
    Symbol(String),
    Pairlist(Vec<(Option<String>, RValue)>),
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    refs: Vec<RValue>,
}

const NILVALUE: u32 = 254;
const REFSXP: u32 = 255;
const EMPTYENV: u32 = 242;
const BASEENV: u32 = 241;
const GLOBALENV: u32 = 253;

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.context("the R data ends in the middle of an item")?;
        let b = &self.buf[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }

    fn len(&mut self) -> Result<usize> {
        let n = self.i32()?;
        if n == -1 {
            // Long vector: two more words.
            let hi = self.u32()? as u64;
            let lo = self.u32()? as u64;
            return Ok(((hi << 32) | lo) as usize);
        }
        usize::try_from(n).context("negative vector length in the R data")
    }

    fn header(&mut self) -> Result<()> {
        if self.bytes(2)? != b"X\n" {
            bail!("not R's XDR serialization format");
        }
        let version = self.u32()?;
        self.u32()?; // writer version
        self.u32()?; // minimal reader version
        match version {
            2 => {}
            3 => {
                let n = self.len()?;
                self.bytes(n)?; // native encoding
            }
            v => bail!("R serialization version {v} is not supported"),
        }
        Ok(())
    }

    fn charsxp(&mut self) -> Result<Option<String>> {
        let flags = self.u32()?;
        if flags & 0xff != 9 {
            bail!(
                "expected a string in the R data, found type {}",
                flags & 0xff
            );
        }
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        let b = self.bytes(usize::try_from(n).context("bad string length")?)?;
        // janeaustenr marks its strings UTF-8; Latin-1 ones are widened byte by byte.
        Ok(Some(match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) => b.iter().map(|&c| c as char).collect(),
        }))
    }

    fn item(&mut self) -> Result<RValue> {
        let flags = self.u32()?;
        let ty = flags & 0xff;
        let has_attr = flags & (1 << 9) != 0;
        let value = match ty {
            NILVALUE | EMPTYENV | BASEENV | GLOBALENV => return Ok(RValue::Null),
            REFSXP => {
                let mut i = (flags >> 8) as usize;
                if i == 0 {
                    i = self.u32()? as usize;
                }
                return self
                    .refs
                    .get(i.wrapping_sub(1))
                    .cloned()
                    .context("a reference in the R data points nowhere");
            }
            1 => {
                // SYMSXP: a CHARSXP, remembered for later references.
                let name = self.charsxp()?.unwrap_or_default();
                let sym = RValue::Symbol(name);
                self.refs.push(sym.clone());
                return Ok(sym);
            }
            2 => {
                // LISTSXP: a pairlist, read iteratively along its CDRs.
                let mut items = Vec::new();
                let mut flags = flags;
                loop {
                    if flags & (1 << 9) != 0 {
                        self.item()?; // attributes of a pairlist cell: unused
                    }
                    let tag = if flags & (1 << 10) != 0 {
                        match self.item()? {
                            RValue::Symbol(s) => Some(s),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    items.push((tag, self.item()?));
                    flags = self.u32()?;
                    match flags & 0xff {
                        2 => continue,
                        NILVALUE => break,
                        t => bail!("a pairlist in the R data ends in type {t}"),
                    }
                }
                return Ok(RValue::Pairlist(items));
            }
            9 => {
                self.at -= 4;
                return Ok(RValue::Str(vec![self.charsxp()?]));
            }
            10 | 13 => {
                let n = self.len()?;
                let mut v = Vec::with_capacity(n.min(1 << 24));
                for _ in 0..n {
                    v.push(self.i32()?);
                }
                RValue::Int(v)
            }
            14 => {
                let n = self.len()?;
                let mut v = Vec::with_capacity(n.min(1 << 24));
                for _ in 0..n {
                    v.push(f64::from_be_bytes(self.bytes(8)?.try_into().expect("8")));
                }
                RValue::Real(v)
            }
            16 => {
                let n = self.len()?;
                let mut v = Vec::with_capacity(n.min(1 << 24));
                for _ in 0..n {
                    v.push(self.charsxp()?);
                }
                RValue::Str(v)
            }
            19 | 20 => {
                let n = self.len()?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.item()?);
                }
                RValue::List(v, None)
            }
            t => bail!("R data of type {t} is not supported"),
        };
        if has_attr {
            let attrs = self.item()?;
            if let (RValue::List(items, _), RValue::Pairlist(attrs)) = (&value, attrs) {
                let found = attrs
                    .into_iter()
                    .find(|(t, _)| t.as_deref() == Some("names"));
                if let Some((_, RValue::Str(n))) = found {
                    let n: Vec<String> = n.into_iter().map(Option::unwrap_or_default).collect();
                    return Ok(RValue::List(items.clone(), Some(n)));
                }
            }
        }
        Ok(value)
    }
}

/// Parses one serialized R object.
pub fn unserialize(buf: &[u8]) -> Result<RValue> {
    let mut r = Reader {
        buf,
        at: 0,
        refs: Vec::new(),
    };
    r.header()?;
    r.item()
}

/// The objects of a lazy-load database: name -> (offset, length) of its record in the `.rdb`.
pub fn index(rdx: &Path) -> Result<BTreeMap<String, (u64, u64)>> {
    let gz = std::fs::read(rdx).with_context(|| format!("reading {}", rdx.display()))?;
    let mut raw = Vec::new();
    if gz.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .with_context(|| format!("unpacking {}", rdx.display()))?;
    } else {
        raw = gz;
    }
    let RValue::List(items, Some(names)) = unserialize(&raw)? else {
        bail!("{} is not an R lazy-load index", rdx.display());
    };
    let pos = names.iter().position(|n| n == "variables");
    let Some(RValue::List(vars, Some(var_names))) = pos.map(|i| &items[i]) else {
        bail!("{} has no variables", rdx.display());
    };
    let mut out = BTreeMap::new();
    for (name, v) in var_names.iter().zip(vars) {
        match v {
            RValue::Int(p) if p.len() == 2 && p[0] >= 0 && p[1] >= 0 => {
                out.insert(name.clone(), (p[0] as u64, p[1] as u64));
            }
            RValue::Real(p) if p.len() == 2 => {
                out.insert(name.clone(), (p[0] as u64, p[1] as u64));
            }
            _ => bail!("bad index entry for {name} in {}", rdx.display()),
        }
    }
    Ok(out)
}

/// Reads object `name` from the database whose files are `<base>.rdb` and `<base>.rdx`.
pub fn read_object(base: &Path, name: &str) -> Result<RValue> {
    let rdx = base.with_extension("rdx");
    let rdb = base.with_extension("rdb");
    let idx = index(&rdx)?;
    let &(offset, len) = idx.get(name).with_context(|| {
        let names: Vec<&str> = idx.keys().map(String::as_str).collect();
        format!(
            "{} has no object {name:?}; it has: {}",
            rdb.display(),
            names.join(", ")
        )
    })?;
    let data = std::fs::read(&rdb).with_context(|| format!("reading {}", rdb.display()))?;
    let rec = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(o, l)| data.get(o..o.checked_add(l)?))
        .with_context(|| format!("the record of {name} lies outside {}", rdb.display()))?;
    record(rec)
}

/// Decodes one `.rdb` record: 4-byte big-endian length, then a zlib stream.
pub fn record(rec: &[u8]) -> Result<RValue> {
    if rec.len() < 4 {
        bail!("an R data record is shorter than its header");
    }
    let expect = u32::from_be_bytes(rec[..4].try_into().expect("4")) as usize;
    let mut raw = Vec::with_capacity(expect);
    flate2::read::ZlibDecoder::new(&rec[4..])
        .read_to_end(&mut raw)
        .context("unpacking an R data record")?;
    if raw.len() != expect {
        bail!(
            "an R data record unpacks to {} bytes, its header says {expect}",
            raw.len()
        );
    }
    unserialize(&raw)
}

/// The lines of a character vector object, `NA` as empty lines, joined with newlines.
pub fn read_text(base: &Path, name: &str) -> Result<String> {
    match read_object(base, name)? {
        RValue::Str(lines) => Ok(lines
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect::<Vec<_>>()
            .join("\n")),
        other => bail!("{name} is not text but {}", kind(&other)),
    }
}

fn kind(v: &RValue) -> &'static str {
    match v {
        RValue::Null => "NULL",
        RValue::Str(_) => "a character vector",
        RValue::Int(_) => "an integer vector",
        RValue::Real(_) => "a numeric vector",
        RValue::List(..) => "a list",
        RValue::Symbol(_) => "a symbol",
        RValue::Pairlist(_) => "a pairlist",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Serializes like R does (version 3) a named list of strings, for a round trip.
    fn serialize_strs(lines: &[Option<&str>]) -> Vec<u8> {
        let mut b = b"X\n".to_vec();
        for w in [3u32, 0x0004_0201, 0x0003_0500, 5] {
            b.extend(w.to_be_bytes());
        }
        b.extend(b"UTF-8");
        b.extend(16u32.to_be_bytes());
        b.extend((lines.len() as u32).to_be_bytes());
        for l in lines {
            b.extend(0x0004_0009u32.to_be_bytes());
            match l {
                Some(s) => {
                    b.extend((s.len() as u32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
                None => b.extend((-1i32).to_be_bytes()),
            }
        }
        b
    }

    fn rec(raw: &[u8]) -> Vec<u8> {
        let mut out = (raw.len() as u32).to_be_bytes().to_vec();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(raw).unwrap();
        out.extend(z.finish().unwrap());
        out
    }

    #[test]
    fn reads_a_character_vector_record() {
        let raw = serialize_strs(&[
            Some("EMMA"),
            None,
            Some("Emma Woodhouse, handsome — clever"),
        ]);
        assert_eq!(
            record(&rec(&raw)).unwrap(),
            RValue::Str(vec![
                Some("EMMA".into()),
                None,
                Some("Emma Woodhouse, handsome — clever".into())
            ])
        );
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let raw = serialize_strs(&[Some("abc")]);
        let good = rec(&raw);
        // Wrong length header.
        let mut bad = good.clone();
        bad[3] ^= 1;
        assert!(record(&bad)
            .unwrap_err()
            .to_string()
            .contains("header says"));
        // Truncated stream.
        assert!(record(&good[..good.len() - 3]).is_err());
        // Truncated serialization inside a valid stream.
        let short = rec(&raw[..raw.len() - 2]);
        let e = record(&short).unwrap_err().to_string();
        assert!(e.contains("ends in the middle"), "{e}");
        assert!(record(&[0, 0]).is_err());
        assert!(unserialize(b"A\nxxxxxxxxxxxx").is_err());
    }

    /// The real package, where the set-up has unpacked it.
    #[test]
    fn reads_emma_from_janeaustenr() {
        let base = crate::corpus::janeaustenr_base();
        if !base.with_extension("rdb").exists() {
            eprintln!(
                "skipped: {} is missing (scripts/setup.sh test fetches it)",
                base.display()
            );
            return;
        }
        let idx = index(&base.with_extension("rdx")).unwrap();
        assert_eq!(idx.len(), 6, "{idx:?}");
        let emma = read_text(&base, "emma").unwrap();
        assert!(
            emma.starts_with("EMMA\n\nBy Jane Austen"),
            "{}",
            &emma[..40]
        );
        assert!(emma.contains("Emma Woodhouse, handsome, clever, and rich"));
        assert!(emma.len() > 800_000, "{}", emma.len());
        let e = read_text(&base, "ulysses").unwrap_err().to_string();
        assert!(
            e.contains("has no object \"ulysses\"") && e.contains("emma"),
            "{e}"
        );
    }
}
