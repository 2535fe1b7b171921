//! The payload encoder of the write path: compact JSON, byte for byte what
//! `serde_json::to_writer` writes, at a fraction of its cost for typical
//! payloads (structs of strings and numbers).
//!
//! serde_json escapes strings one byte at a time and reaches its writer
//! through a call per fragment; this encoder checks sixteen bytes at a time
//! and copies clean runs whole. It covers the data model serde's derives
//! produce. Anything it does not handle exactly as serde_json does (floats
//! as map keys, serde_json's private raw-value and number tokens, an error
//! raised by a `Serialize` impl) makes it give up with [`JsonError::Fallback`],
//! and the caller encodes the payload again with serde_json itself, which
//! also produces the error a failing payload deserves. The tests compare the
//! two encoders on generated values.

use std::fmt;

use serde::ser::{self, Impossible, Serialize};

/// Why the fast encoder stopped.
#[derive(Debug)]
pub(crate) enum JsonError {
    /// The output would pass the size limit.
    Exceeded,
    /// Not handled here: encode with serde_json instead.
    Fallback,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Exceeded => f.write_str("payload limit exceeded"),
            JsonError::Fallback => f.write_str("left to serde_json"),
        }
    }
}

impl std::error::Error for JsonError {}

impl ser::Error for JsonError {
    fn custom<T: fmt::Display>(_message: T) -> Self {
        JsonError::Fallback
    }
}

type Result<T = ()> = std::result::Result<T, JsonError>;

/// Appends the compact JSON of `value` to `out`, refusing to let `out` grow
/// past `max` bytes. On an error `out` holds a partial encoding.
pub(crate) fn encode<T: ?Sized + Serialize>(value: &T, out: &mut Vec<u8>, max: usize) -> Result {
    value.serialize(&mut Encoder { out, max })
}

/// The serializer: the output buffer and its limit.
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    max: usize,
}

/// serde_json's escapes: 0 for bytes copied as they are, else the letter
/// after the backslash (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// True if any of the eight bytes of `word` may need an escape: a control
/// byte, a quote or a backslash. Exact when false (a run with no such byte);
/// when true the bytes are looked at one by one.
#[inline]
fn may_need_escape(word: u64) -> bool {
    let control = word.wrapping_sub(ONES * 0x20);
    let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
    let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    // A byte below 0x20, or equal to one of the two, borrows into its high
    // bit; bytes of 0x80 and above are masked out by `!word`.
    ((control | quote | backslash) & !word & HIGHS) != 0
}

/// The eight bytes of `chunk` as one word.
#[inline]
fn word(chunk: &[u8]) -> u64 {
    u64::from_le_bytes([
        chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
    ])
}

/// True if any of the sixteen bytes needs an escape. A fold with no early
/// exit, so the compiler makes it a handful of vector instructions.
#[inline]
fn block_needs_escape(block: &[u8; 16]) -> bool {
    block.iter().fold(false, |dirty, &byte| {
        dirty | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    })
}

/// True if no byte of `bytes` needs an escape (false may be a false alarm,
/// which only sends the string down the byte-by-byte path). Long strings
/// are checked sixteen bytes at a time, the last partial block as the final
/// sixteen bytes, overlapping the block before; strings of eight to sixteen
/// bytes as two words that may overlap; shorter ones byte by byte.
#[inline(always)]
fn all_clean(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.iter().all(|&byte| ESCAPE[usize::from(byte)] == 0);
    }
    if bytes.len() <= 16 {
        return !may_need_escape(word(&bytes[..8]))
            && !may_need_escape(word(&bytes[bytes.len() - 8..]));
    }
    let blocks = bytes.chunks_exact(16);
    let partial = !blocks.remainder().is_empty();
    let mut dirty = false;
    for block in blocks {
        dirty |= block_needs_escape(block.try_into().expect("sixteen bytes"));
    }
    if partial {
        let last = &bytes[bytes.len() - 16..];
        dirty |= block_needs_escape(last.try_into().expect("sixteen bytes"));
    }
    !dirty
}

/// Length of the leading run of `bytes` that needs no escape.
#[inline]
fn clean_prefix(bytes: &[u8]) -> usize {
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        if may_need_escape(word(chunk)) {
            break;
        }
        at += 8;
    }
    while at < bytes.len() && ESCAPE[usize::from(bytes[at])] == 0 {
        at += 1;
    }
    at
}

impl Encoder<'_> {
    #[inline]
    fn room(&self, more: usize) -> Result {
        if self.out.len() + more > self.max {
            Err(JsonError::Exceeded)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result {
        self.room(bytes.len())?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    #[inline]
    fn byte(&mut self, byte: u8) -> Result {
        self.room(1)?;
        self.out.push(byte);
        Ok(())
    }

    /// A JSON string: quoted, escaped as serde_json escapes. Clean strings,
    /// the common case, are checked sixteen bytes at a time and copied whole.
    #[inline]
    fn string(&mut self, text: &str) -> Result {
        let bytes = text.as_bytes();
        if all_clean(bytes) {
            return self.clean_quoted(bytes, b"\"");
        }
        // Escapes only add bytes: a string that cannot fit fails at once.
        self.room(bytes.len() + 2)?;
        self.escaped_string(bytes)
    }

    /// A struct field's key and its colon: `"key":`. Keys with nothing to
    /// escape (nearly all) are written with their quotes and colon in one go.
    /// Always inlined, like the field methods that call it: a field's name is
    /// a constant, so the check folds away and the key is written as
    /// constant bytes.
    #[inline(always)]
    fn key(&mut self, key: &str) -> Result {
        let bytes = key.as_bytes();
        if all_clean(bytes) {
            return self.clean_quoted(bytes, b"\":");
        }
        self.escaped_key(key)
    }

    /// A key with something to escape, and its colon.
    #[cold]
    #[inline(never)]
    fn escaped_key(&mut self, key: &str) -> Result {
        self.string(key)?;
        self.byte(b':')
    }

    /// `"`, then `bytes`, which need no escape, then `close`: one check of
    /// the limit and one reservation. Always inlined, so that `close` is a
    /// constant and its copy a store or two rather than a call.
    #[inline(always)]
    fn clean_quoted(&mut self, bytes: &[u8], close: &[u8]) -> Result {
        let length = 1 + bytes.len() + close.len();
        self.room(length)?;
        self.out.reserve(length);
        self.out.push(b'"');
        self.out.extend_from_slice(bytes);
        self.out.extend_from_slice(close);
        Ok(())
    }

    /// A string with something to escape: clean runs are copied whole,
    /// the bytes between them escaped one by one. The caller checked that
    /// the string and its quotes fit.
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, mut rest: &[u8]) -> Result {
        self.out.push(b'"');
        loop {
            let clean = clean_prefix(rest);
            self.put(&rest[..clean])?;
            let Some(&byte) = rest.get(clean) else {
                break;
            };
            rest = &rest[clean + 1..];
            let escape = ESCAPE[usize::from(byte)];
            if escape == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.put(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xF)],
                ])?;
            } else {
                self.put(&[b'\\', escape])?;
            }
        }
        self.byte(b'"')
    }

    fn integer(&mut self, value: impl itoa::Integer) -> Result {
        let mut buffer = itoa::Buffer::new();
        self.put(buffer.format(value).as_bytes())
    }

    /// Floats are written by serde_json itself, so they come out exactly as
    /// it writes them (its float formatting is its own choice).
    fn float(&mut self, value: &impl Serialize) -> Result {
        let mut text = Vec::with_capacity(24);
        serde_json::to_writer(&mut text, value).map_err(|_| JsonError::Fallback)?;
        self.put(&text)
    }

    /// Opens `{"variant":` for the enum variants serde_json wraps in an object.
    fn variant_key(&mut self, variant: &str) -> Result {
        self.byte(b'{')?;
        self.string(variant)?;
        self.byte(b':')
    }
}

/// Opens an array or object.
fn compound<'a, 'o>(
    encoder: &'a mut Encoder<'o>,
    open: &'static [u8],
    close: &'static [u8],
) -> Result<Compound<'a, 'o>> {
    encoder.put(open)?;
    Ok(Compound {
        encoder,
        first: true,
        close,
    })
}

/// The integer methods of a serializer with an `integer` method.
macro_rules! integer_methods {
    () => {
        integer_methods!(@each
            serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u8: u8,
            serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
            serialize_u128: u128
        );
    };
    (@each $($method:ident: $ty:ty),*) => {$(
        fn $method(self, value: $ty) -> Result {
            self.integer(value)
        }
    )*};
}

/// serde_json's private struct names (raw values, arbitrary-precision
/// numbers), which its own serializer writes specially.
fn is_serde_json_token(name: &str) -> bool {
    name.starts_with("$serde_json::")
}

impl<'a, 'o> ser::Serializer for &'a mut Encoder<'o> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Compound<'a, 'o>;
    type SerializeTuple = Compound<'a, 'o>;
    type SerializeTupleStruct = Compound<'a, 'o>;
    type SerializeTupleVariant = Compound<'a, 'o>;
    type SerializeMap = Compound<'a, 'o>;
    type SerializeStruct = Compound<'a, 'o>;
    type SerializeStructVariant = Compound<'a, 'o>;

    fn serialize_bool(self, value: bool) -> Result {
        self.put(if value { b"true" } else { b"false" })
    }

    integer_methods!();

    fn serialize_f32(self, value: f32) -> Result {
        self.float(&value)
    }

    fn serialize_f64(self, value: f64) -> Result {
        self.float(&value)
    }

    fn serialize_char(self, value: char) -> Result {
        self.string(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, value: &str) -> Result {
        self.string(value)
    }

    fn serialize_bytes(self, value: &[u8]) -> Result {
        let mut seq = compound(self, b"[", b"]")?;
        for byte in value {
            ser::SerializeSeq::serialize_element(&mut seq, byte)?;
        }
        ser::SerializeSeq::end(seq)
    }

    fn serialize_none(self) -> Result {
        self.put(b"null")
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result {
        self.put(b"null")
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.put(b"null")
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.string(variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        self.variant_key(variant)?;
        value.serialize(&mut *self)?;
        self.byte(b'}')
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        compound(self, b"[", b"]")
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        compound(self, b"[", b"]")
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        compound(self, b"[", b"]")
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        self.variant_key(variant)?;
        compound(self, b"[", b"]}")
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        compound(self, b"{", b"}")
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        if is_serde_json_token(name) {
            return Err(JsonError::Fallback);
        }
        compound(self, b"{", b"}")
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        self.variant_key(variant)?;
        compound(self, b"{", b"}}")
    }
}

/// An array or object being written: a comma before every element but the
/// first, and `close` at the end.
pub(crate) struct Compound<'a, 'o> {
    encoder: &'a mut Encoder<'o>,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_, '_> {
    #[inline]
    fn separate(&mut self) -> Result {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.encoder.byte(b',')
        }
    }

    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.separate()?;
        value.serialize(&mut *self.encoder)
    }

    #[inline(always)]
    fn field<T: ?Sized + Serialize>(&mut self, key: &str, value: &T) -> Result {
        self.separate()?;
        self.encoder.key(key)?;
        value.serialize(&mut *self.encoder)
    }

    fn finish(self) -> Result {
        self.encoder.put(self.close)
    }
}

/// serde's compound traits whose entries are plain values.
macro_rules! element_compounds {
    ($($kind:ident :: $method:ident),*) => {$(
        impl ser::$kind for Compound<'_, '_> {
            type Ok = ();
            type Error = JsonError;

            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
                self.element(value)
            }

            fn end(self) -> Result {
                self.finish()
            }
        }
    )*};
}

element_compounds!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result {
        self.separate()?;
        key.serialize(MapKey(&mut *self.encoder))
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.encoder.byte(b':')?;
        value.serialize(&mut *self.encoder)
    }

    fn end(self) -> Result {
        self.finish()
    }
}

/// serde's compound traits whose entries are named fields.
macro_rules! field_compounds {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Compound<'_, '_> {
            type Ok = ();
            type Error = JsonError;

            // Always inlined, so that the field's name reaches
            // `Encoder::key` as a constant.
            #[inline(always)]
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result {
                self.field(key, value)
            }

            fn end(self) -> Result {
                self.finish()
            }
        }
    )*};
}

field_compounds!(SerializeStruct, SerializeStructVariant);

/// A map key: a string, or a key serde_json writes as a quoted string
/// (integers, booleans, unit variants). Anything else is left to serde_json
/// (float keys, and the keys it refuses).
struct MapKey<'a, 'o>(&'a mut Encoder<'o>);

impl MapKey<'_, '_> {
    fn quoted(self, text: &[u8]) -> Result {
        self.0.clean_quoted(text, b"\"")
    }

    fn integer(self, value: impl itoa::Integer) -> Result {
        let mut buffer = itoa::Buffer::new();
        self.quoted(buffer.format(value).as_bytes())
    }
}

impl ser::Serializer for MapKey<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Impossible<(), JsonError>;
    type SerializeTuple = Impossible<(), JsonError>;
    type SerializeTupleStruct = Impossible<(), JsonError>;
    type SerializeTupleVariant = Impossible<(), JsonError>;
    type SerializeMap = Impossible<(), JsonError>;
    type SerializeStruct = Impossible<(), JsonError>;
    type SerializeStructVariant = Impossible<(), JsonError>;

    fn serialize_str(self, value: &str) -> Result {
        self.0.string(value)
    }

    fn serialize_char(self, value: char) -> Result {
        self.0.string(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.0.string(variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    fn serialize_bool(self, value: bool) -> Result {
        self.quoted(if value { b"true" } else { b"false" })
    }

    integer_methods!();

    fn serialize_f32(self, _value: f32) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_f64(self, _value: f64) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_none(self) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _value: &T) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_unit(self) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result {
        Err(JsonError::Fallback)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(JsonError::Fallback)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Err(JsonError::Fallback)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(JsonError::Fallback)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(JsonError::Fallback)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Err(JsonError::Fallback)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Err(JsonError::Fallback)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(JsonError::Fallback)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::Value;

    use crate::store::codec::encode_payload;
    use crate::StoreError;

    /// What the write path stores for `value` (fast encoder, or serde_json
    /// when it gives up), next to what serde_json writes.
    fn both<T: Serialize>(value: &T) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let ours = match encode_payload(value, u32::MAX) {
            Ok(bytes) => Some(bytes),
            Err(StoreError::Serialization { .. }) => None,
            Err(other) => panic!("unexpected error {other}"),
        };
        (ours, serde_json::to_vec(value).ok())
    }

    fn same<T: Serialize + std::fmt::Debug>(value: &T) {
        let (ours, theirs) = both(value);
        assert_eq!(
            ours.as_deref().map(String::from_utf8_lossy),
            theirs.as_deref().map(String::from_utf8_lossy),
            "for {value:?}"
        );
    }

    /// The whole-string check never calls a string clean that holds a byte
    /// needing an escape, whatever its length and position (strings shorter
    /// than a word, the two words of a short string and the overlapping last
    /// block of a long one included), and plain text takes the fast path.
    #[test]
    fn all_clean_misses_no_escape_at_any_length_or_position() {
        for len in 0..=50 {
            let plain: Vec<u8> = (0..len).map(|i| b"aZ09 ~.-"[i % 8]).collect();
            assert!(super::all_clean(&plain), "plain text of {len} bytes");
            for at in 0..len {
                for byte in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut dirty = plain.clone();
                    dirty[at] = byte;
                    assert!(
                        !super::all_clean(&dirty),
                        "byte {byte:#04x} at {at} of {len} was missed"
                    );
                    same(&String::from_utf8(dirty).unwrap());
                }
            }
        }
        // Bytes of 0x80 and above need no escape (UTF-8 is written as is).
        assert!(super::all_clean("naïve café ☕ 𝄞".as_bytes()));
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[a-z \"\\\\\\x00-\\x1f\\x7f]{0,40}",
            "[a-zA-Z0-9 ]{0,200}",
            any::<Vec<char>>().prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn writes_what_serde_json_writes(value in value()) {
            same(&value);
        }

        #[test]
        fn strings_escape_as_serde_json_escapes(text in text()) {
            same(&text);
            same(&BTreeMap::from([(text.clone(), text)]));
        }

        /// The limit: a payload is refused exactly when its encoding is
        /// longer than the limit.
        #[test]
        fn the_limit_is_exact(value in value(), slack in 0usize..4) {
            let full = serde_json::to_vec(&value).unwrap();
            for max in [full.len().saturating_sub(slack), full.len() + slack] {
                let result = encode_payload(&value, max as u32);
                if full.len() <= max {
                    prop_assert_eq!(result.unwrap(), full.clone());
                } else {
                    let refused = matches!(result, Err(StoreError::PayloadTooLarge { .. }));
                    prop_assert!(refused);
                }
            }
        }

        /// Struct fields (keys written with their separator and quotes in
        /// one go, or escaped when they must be) come out as serde_json
        /// writes them, and the limit stays exact at every length.
        #[test]
        fn struct_fields_and_their_limit(note in text(), amount in any::<u64>(), flag in any::<bool>()) {
            let value = Fields { note: note.clone(), amount, odd: flag, nested: Inner { note } };
            same(&value);
            let full = serde_json::to_vec(&value).unwrap();
            for max in full.len().saturating_sub(40)..=full.len() + 1 {
                let result = encode_payload(&value, max as u32);
                if full.len() <= max {
                    prop_assert_eq!(result.unwrap(), full.clone());
                } else {
                    let refused = matches!(result, Err(StoreError::PayloadTooLarge { .. }));
                    prop_assert!(refused, "limit {} for {} bytes", max, full.len());
                }
            }
        }
    }

    #[derive(Debug, Serialize)]
    struct Fields {
        note: String,
        amount: u64,
        #[serde(rename = "a \"quoted\"\tkey")]
        odd: bool,
        nested: Inner,
    }

    #[derive(Debug, Serialize)]
    struct Inner {
        #[serde(rename = "")]
        note: String,
    }

    #[derive(Debug, Serialize)]
    struct Unit;

    #[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
    struct Newtype(u8);

    #[derive(Debug, Serialize)]
    struct Pair(i8, &'static str);

    #[derive(Debug, Serialize)]
    enum Shape {
        Empty,
        Circle(f32),
        Line(i16, i16),
        Rect { w: u32, h: u32 },
        Nothing {},
    }

    #[derive(Debug, Serialize)]
    #[serde(tag = "type")]
    enum Tagged {
        A { x: i32 },
        B(BTreeMap<String, u8>),
    }

    #[derive(Debug, Serialize)]
    struct Everything {
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        pair: Pair,
        shapes: Vec<Shape>,
        tagged: Vec<Tagged>,
        none: Option<u8>,
        some: Option<&'static str>,
        bytes: &'static [u8],
        #[serde(with = "serde_bytes_like")]
        raw: Vec<u8>,
        chars: [char; 4],
        big: i128,
        huge: u128,
        floats: [f64; 6],
        small_floats: [f32; 3],
        empty_list: Vec<u8>,
        empty_map: BTreeMap<String, u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        #[serde(flatten)]
        flattened: BTreeMap<String, i64>,
    }

    /// `serialize_bytes` (serde's derive never calls it for a slice).
    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(bytes)
        }
    }

    #[test]
    fn writes_the_whole_data_model_as_serde_json_does() {
        same(&Everything {
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(7),
            pair: Pair(-3, "p\"q"),
            shapes: vec![
                Shape::Empty,
                Shape::Circle(1.5),
                Shape::Line(-1, 2),
                Shape::Rect { w: 3, h: 4 },
                Shape::Nothing {},
            ],
            tagged: vec![
                Tagged::A { x: -9 },
                Tagged::B(BTreeMap::from([("k".into(), 1)])),
            ],
            none: None,
            some: Some("\u{1F980}\n"),
            bytes: b"ab",
            raw: vec![0, 255, 16],
            chars: ['a', '"', '\u{7}', '\u{e9}'],
            big: i128::MIN,
            huge: u128::MAX,
            floats: [0.0, -0.0, 1e300, f64::NAN, f64::INFINITY, 0.1],
            small_floats: [f32::NEG_INFINITY, 3.25, f32::MIN_POSITIVE],
            empty_list: vec![],
            empty_map: BTreeMap::new(),
            skipped: None,
            flattened: BTreeMap::from([("extra".into(), -1)]),
        });
    }

    #[test]
    fn map_keys_are_written_or_refused_as_serde_json_does() {
        same(&BTreeMap::from([(1u8, 'a'), (200, 'b')]));
        same(&BTreeMap::from([(-5i64, ()), (i64::MAX, ())]));
        same(&BTreeMap::from([(u128::MAX, 1)]));
        same(&BTreeMap::from([(true, 1), (false, 2)]));
        same(&BTreeMap::from([('x', 1)]));
        same(&BTreeMap::from([(Newtype(3), 1)]));
        same(&HashMap::from([((), 1)]));
        same(&BTreeMap::from([(Some(1), 1)]));
        same(&BTreeMap::from([(vec![1], 1)]));
        same(&BTreeMap::from([((1, 2), 1)]));
        #[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
        enum Key {
            Plain,
            Wrapped(u8),
        }
        same(&BTreeMap::from([(Key::Plain, 1)]));
        same(&BTreeMap::from([(Key::Wrapped(1), 1)]));
        // Float keys: serde_json writes finite ones quoted and refuses the rest.
        #[derive(Debug)]
        struct FloatKeys(Vec<f64>);
        impl Serialize for FloatKeys {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for key in &self.0 {
                    map.serialize_entry(key, &0)?;
                }
                map.end()
            }
        }
        same(&FloatKeys(vec![1.5, -0.0]));
        same(&FloatKeys(vec![f64::NAN]));
    }

    #[test]
    fn errors_raised_by_a_payload_are_serde_json_errors() {
        #[derive(Debug)]
        struct Failing;
        impl Serialize for Failing {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("this payload cannot be written"))
            }
        }
        let error = encode_payload(&vec![Failing], u32::MAX).unwrap_err();
        assert!(
            error.to_string().contains("this payload cannot be written"),
            "{error}"
        );
    }

    #[test]
    fn raw_values_are_left_to_serde_json() {
        // The struct name serde_json gives raw values: whatever serde_json
        // does with it (its features decide), the write path does the same.
        #[derive(Debug)]
        struct LooksRaw;
        impl Serialize for LooksRaw {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut raw = s.serialize_struct("$serde_json::private::RawValue", 1)?;
                raw.serialize_field("$serde_json::private::RawValue", "[1, 2]")?;
                raw.end()
            }
        }
        same(&LooksRaw);
    }
}
