//! Which weight types the engine runs, and a walk over a GGUF header (whole or a download's
//! first bytes) that names a type it does not, so such a file is refused in words that say
//! what it is ("stored as IQ4_XS"), never called damaged.
//!
//! candle's GGUF reader stops at the first tensor of a type it does not know with "unknown
//! dtype for tensor 20" (20 being the type's number): true, but a user reads "corrupt". This
//! walk reads the same header itself, as far as the bytes go, and knows every type ggml has.
//! It also says where each tensor's type is written: the types our own kernels run and candle
//! does not (IQ4_NL, IQ4_XS) are handed to candle's reader as a stand-in (see
//! [`super::gguf`]), so candle reads the metadata exactly as before.

use std::io::Read;

use crate::qmatmul::Format;
use crate::spec::Architecture;
use crate::tokenizer::VocabType;
use crate::{Error, Result};

/// ggml's name for tensor type number `id` (`ggml.h`, `enum ggml_type`).
pub fn ggml_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        42 => "Q2_0",
        _ => return None,
    })
}

/// Whether the engine runs weights of ggml type `id` (the types candle reads and our
/// kernels or candle's multiply, and the i-quants our kernels run: IQ4_NL and IQ4_XS).
pub fn runs_ggml_type(id: u32) -> bool {
    matches!(id, 0..=3 | 6..=8 | 10..=14 | 30) || foreign_format(id).is_some()
}

/// Our kernels' format for the ggml types only they read (candle does not).
fn foreign_format(id: u32) -> Option<Format> {
    match id {
        20 => Some(Format::IQ4NL),
        23 => Some(Format::IQ4XS),
        _ => None,
    }
}

/// llama.cpp's name for a file type (`general.file_type`, `llama.h`, `enum llama_ftype`), and
/// whether the engine runs files of it.
fn file_type(id: u32) -> Option<(&'static str, bool)> {
    Some(match id {
        0 => ("F32", true),
        1 => ("F16", true),
        2 => ("Q4_0", true),
        3 => ("Q4_1", true),
        7 => ("Q8_0", true),
        8 => ("Q5_0", true),
        9 => ("Q5_1", true),
        10 => ("Q2_K", true),
        11 => ("Q3_K_S", true),
        12 => ("Q3_K_M", true),
        13 => ("Q3_K_L", true),
        14 => ("Q4_K_S", true),
        15 => ("Q4_K_M", true),
        16 => ("Q5_K_S", true),
        17 => ("Q5_K_M", true),
        18 => ("Q6_K", true),
        19 => ("IQ2_XXS", false),
        20 => ("IQ2_XS", false),
        21 => ("Q2_K_S", true),
        22 => ("IQ3_XS", false),
        23 => ("IQ3_XXS", false),
        24 => ("IQ1_S", false),
        25 => ("IQ4_NL", true),
        26 => ("IQ3_S", false),
        27 => ("IQ3_M", false),
        28 => ("IQ2_S", false),
        29 => ("IQ2_M", false),
        30 => ("IQ4_XS", true),
        31 => ("IQ1_M", false),
        32 => ("BF16", true),
        36 => ("TQ1_0", false),
        37 => ("TQ2_0", false),
        38 => ("MXFP4", false),
        39 => ("NVFP4", false),
        40 => ("Q1_0", false),
        41 => ("Q2_0", false),
        _ => return None,
    })
}

/// The types a user can pick instead, in the words of the refusal.
pub const TYPES_THAT_RUN: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the K-quants from Q2_K to Q6_K (Q4_K_M is the usual choice), IQ4_NL and IQ4_XS";

/// The longest string a header may hold (chat templates run to a few tens of kilobytes).
const MAX_STRING: u64 = 16 << 20;

struct Walk<R> {
    r: R,
    /// GGUF v1 counts and lengths are 32-bit.
    v1: bool,
    /// Bytes read so far.
    pos: u64,
}

/// Why the walk stopped early: the bytes ended (a prefix) or something no header holds.
enum Stop {
    End,
    Refused(Error),
}

impl From<std::io::Error> for Stop {
    fn from(_: std::io::Error) -> Self {
        Stop::End
    }
}

type Step<T> = std::result::Result<T, Stop>;

impl<R: Read> Walk<R> {
    fn bytes<const N: usize>(&mut self) -> Step<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Step<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Step<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn count(&mut self) -> Step<u64> {
        if self.v1 {
            Ok(self.u32()? as u64)
        } else {
            self.u64()
        }
    }
    fn skip(&mut self, n: u64) -> Step<()> {
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        self.pos += copied;
        if copied < n {
            return Err(Stop::End);
        }
        Ok(())
    }
    fn string(&mut self) -> Step<String> {
        let n = self.count()?;
        if n > MAX_STRING {
            return Err(Stop::End); // no real header; candle's reader says what is wrong
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b)?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    /// Skips a value of GGUF type `t`.
    fn skip_value(&mut self, t: u32, depth: u32) -> Step<()> {
        let size = match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => {
                let n = self.count()?;
                return self.skip(n);
            }
            9 if depth == 0 => {
                let et = self.u32()?;
                let n = self.count()?;
                return match et {
                    0 | 1 | 7 => self.skip(n),
                    2 | 3 => self.skip(n.saturating_mul(2)),
                    4..=6 => self.skip(n.saturating_mul(4)),
                    10..=12 => self.skip(n.saturating_mul(8)),
                    _ => (0..n).try_for_each(|_| self.skip_value(et, depth + 1)),
                };
            }
            _ => return Err(Stop::End),
        };
        self.skip(size)
    }
}

/// Reads a GGUF header from `r` as far as it goes and refuses, in words, what the engine
/// cannot run: an architecture, a vocabulary, a file type (`general.file_type`, near the
/// start, so a download is refused from its first bytes) or a tensor's weight type. `Ok(())`
/// when nothing read shows a problem, including when the bytes end early or hold something no
/// header does (candle's reader, which reads it next, names that).
pub(crate) fn check_runnable(r: impl Read) -> Result<()> {
    match walk(r) {
        Err(Stop::Refused(e)) => Err(e),
        _ => Ok(()),
    }
}

/// A tensor of the index whose type candle does not read: its name, our format for it, and
/// where in the file its type number is written.
#[derive(Debug, Clone)]
pub(crate) struct Foreign {
    pub name: String,
    pub format: Format,
    pub type_at: u64,
}

/// A whole header, walked: the tensors candle cannot read (all of them types the engine runs)
/// and the header's length (where the tensor index ends).
#[derive(Debug)]
pub(crate) struct Index {
    pub foreign: Vec<Foreign>,
    pub end: u64,
}

/// Walks a whole header: `Ok(Some)` with the tensors candle cannot read, `Err` when something
/// the engine cannot run is named, `Ok(None)` when the header is not one the walk can read to
/// its end (candle's reader then says what is wrong).
pub(crate) fn index(r: impl Read) -> Result<Option<Index>> {
    match walk(r) {
        Ok(i) => Ok(Some(i)),
        Err(Stop::Refused(e)) => Err(e),
        Err(Stop::End) => Ok(None),
    }
}

fn walk(r: impl Read) -> Step<Index> {
    let mut w = Walk {
        r,
        v1: false,
        pos: 0,
    };
    if &w.bytes::<4>()? != b"GGUF" {
        return Err(Stop::End);
    }
    w.v1 = w.u32()? < 2;
    let tensors = w.count()?;
    let kvs = w.count()?;
    let refuse = |e| Err(Stop::Refused(e));
    for _ in 0..kvs {
        let key = w.string()?;
        let t = w.u32()?;
        match (key.as_str(), t) {
            ("general.architecture", 8) => {
                if let Err(e) = Architecture::parse(&w.string()?) {
                    return refuse(e);
                }
            }
            ("tokenizer.ggml.model", 8) => {
                if let Err(e) = VocabType::parse(&w.string()?) {
                    return refuse(e);
                }
            }
            ("general.file_type", 4 | 5) => {
                if let Some((name, false)) = file_type(w.u32()?) {
                    return refuse(Error::UnsupportedWeightType {
                        name: name.into(),
                        tensor: None,
                    });
                }
            }
            _ => w.skip_value(t, 0)?,
        }
    }
    let mut foreign = Vec::new();
    for _ in 0..tensors {
        let name = w.string()?;
        let dims = w.u32()?;
        if dims > 8 {
            return Err(Stop::End);
        }
        for _ in 0..dims {
            w.count()?;
        }
        let type_at = w.pos;
        let ty = w.u32()?;
        w.u64()?;
        if !runs_ggml_type(ty) {
            return refuse(Error::UnsupportedWeightType {
                name: ggml_type_name(ty)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("ggml type {ty}, one this version does not know")),
                tensor: Some(name),
            });
        }
        if let Some(format) = foreign_format(ty) {
            foreign.push(Foreign {
                name,
                format,
                type_at,
            });
        }
    }
    Ok(Index {
        foreign,
        end: w.pos,
    })
}
