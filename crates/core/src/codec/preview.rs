//! Argument previews: a short, readable text of a function's arguments, stored with each
//! entry so that inspection tools (`cachier show`) can say which arguments it belongs to.
//!
//! Rendered from the arguments' serialized form, since every memoized function's arguments
//! are `Serialize` (their key is derived from it) while few are `Debug`: Rust's `Debug` syntax
//! as far as serde's data model carries it (`12, "abc", [1, 2], Point { x: 1, y: 2 },
//! Some(Red)`), the arguments of a tuple listed without its parentheses. Rendering stops as
//! soon as the text is over [`MAX_PREVIEW_LEN`], so a large argument costs no more than a
//! preview's worth of text.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

use super::MAX_PREVIEW_LEN;

/// The preview of `args`: at most [`MAX_PREVIEW_LEN`] bytes of UTF-8, cut on a character
/// boundary with an ellipsis when the whole text would be longer. Arguments whose
/// serialization fails show what was rendered before the failure.
pub fn render_preview<T: Serialize + ?Sized>(args: &T) -> String {
    let mut renderer = Renderer {
        out: String::new(),
        top: true,
    };
    // `Err` means the text is full (or the value refused to serialize): what is there stays.
    let _ = args.serialize(&mut renderer);
    match cut(&renderer.out, MAX_PREVIEW_LEN) {
        Cow::Borrowed(_) => renderer.out,
        Cow::Owned(text) => text,
    }
}

/// `text`, or its longest prefix that fits `max` bytes with an ellipsis after it, cut on a
/// character boundary.
pub(super) fn cut(text: &str, max: usize) -> Cow<'_, str> {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{ELLIPSIS}", &text[..end]))
}

/// The text is longer than a preview: rendering stops.
#[derive(Debug)]
pub(super) struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("preview full")
    }
}
impl std::error::Error for Full {}
impl ser::Error for Full {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Full
    }
}

struct Renderer {
    out: String,
    /// Nothing rendered yet: a tuple here is the argument list, shown without parentheses.
    top: bool,
}

impl Renderer {
    /// Whether this value is the top-level one (and from now on, nothing is).
    fn begin(&mut self) -> bool {
        std::mem::take(&mut self.top)
    }

    fn put(&mut self, text: &str) -> Result<(), Full> {
        self.write_str(text).map_err(|_| Full)
    }

    fn show(&mut self, value: impl fmt::Debug) -> Result<(), Full> {
        write!(self, "{value:?}").map_err(|_| Full)
    }
}

/// Keeps one byte past a preview's length (enough to know it must be cut), then refuses more.
impl fmt::Write for Renderer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = (MAX_PREVIEW_LEN + 1).saturating_sub(self.out.len());
        if text.len() <= room {
            self.out.push_str(text);
            return Ok(());
        }
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.out.push_str(&text[..end]);
        if end < room {
            // A character that straddles the bound: keep it, so the text is over the bound.
            if let Some(c) = text[end..].chars().next() {
                self.out.push(c);
            }
        }
        Err(fmt::Error)
    }
}

/// A sequence, tuple, map or struct being rendered: separators between its parts, and its
/// closing bracket.
struct Compound<'a> {
    r: &'a mut Renderer,
    first: bool,
    close: &'static str,
}

impl<'a> Compound<'a> {
    /// A struct's fields, after its name: `Name { a: 1 }`, or `Name {}` without any.
    fn fields(r: &'a mut Renderer, name: &str) -> Result<Compound<'a>, Full> {
        r.put(name)?;
        r.put(" {")?;
        Ok(Compound {
            r,
            first: true,
            close: "}",
        })
    }

    fn separate(&mut self) -> Result<(), Full> {
        if std::mem::take(&mut self.first) {
            Ok(())
        } else {
            self.r.put(", ")
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        self.separate()?;
        value.serialize(&mut *self.r)
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Full> {
        self.separate()?;
        if self.close == "}" {
            // The first field: a space after the brace, and one before the closing one.
            self.r.put(" ")?;
            self.close = " }";
        }
        self.r.put(name)?;
        self.r.put(": ")?;
        value.serialize(&mut *self.r)
    }

    fn finish(self) -> Result<(), Full> {
        self.r.put(self.close)
    }
}

macro_rules! shown {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $( fn $method(self, value: $ty) -> Result<(), Full> {
            self.begin();
            self.show(value)
        } )*
    };
}

impl<'a> ser::Serializer for &'a mut Renderer {
    type Ok = ();
    type Error = Full;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    shown!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
    );

    fn serialize_bytes(self, bytes: &[u8]) -> Result<(), Full> {
        self.begin();
        let mut seq = Compound {
            r: self,
            first: true,
            close: "]",
        };
        seq.r.put("[")?;
        for byte in bytes {
            seq.element(byte)?;
        }
        seq.finish()
    }
    fn serialize_none(self) -> Result<(), Full> {
        self.begin();
        self.put("None")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Full> {
        self.begin();
        self.put("Some(")?;
        value.serialize(&mut *self)?;
        self.put(")")
    }
    fn serialize_unit(self) -> Result<(), Full> {
        self.begin();
        self.put("()")
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Full> {
        self.begin();
        self.put(name)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Full> {
        self.begin();
        self.put(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Full> {
        self.begin();
        self.put(name)?;
        self.put("(")?;
        value.serialize(&mut *self)?;
        self.put(")")
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Full> {
        self.begin();
        self.put(variant)?;
        self.put("(")?;
        value.serialize(&mut *self)?;
        self.put(")")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Full> {
        self.begin();
        self.put("[")?;
        Ok(Compound {
            r: self,
            first: true,
            close: "]",
        })
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Full> {
        // The argument list (the top-level tuple) reads as the arguments of a call.
        let close = if self.begin() {
            ""
        } else {
            self.put("(")?;
            ")"
        };
        Ok(Compound {
            r: self,
            first: true,
            close,
        })
    }
    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Compound<'a>, Full> {
        self.begin();
        self.put(name)?;
        self.put("(")?;
        Ok(Compound {
            r: self,
            first: true,
            close: ")",
        })
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Full> {
        self.serialize_tuple_struct(variant, 0)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Full> {
        self.begin();
        self.put("{")?;
        Ok(Compound {
            r: self,
            first: true,
            close: "}",
        })
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Compound<'a>, Full> {
        self.begin();
        Compound::fields(self, name)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Full> {
        self.serialize_struct(variant, len)
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Full;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        self.element(value)
    }
    fn end(self) -> Result<(), Full> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Full;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        self.element(value)
    }
    fn end(self) -> Result<(), Full> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Full;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        self.element(value)
    }
    fn end(self) -> Result<(), Full> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Full;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        self.element(value)
    }
    fn end(self) -> Result<(), Full> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Full;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Full> {
        self.element(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Full> {
        self.r.put(": ")?;
        value.serialize(&mut *self.r)
    }
    fn end(self) -> Result<(), Full> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Full;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Full> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), Full> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Full;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Full> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), Full> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Point {
        x: i32,
        y: i32,
    }
    #[derive(serde::Serialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Rect { w: u8, h: u8 },
    }
    #[derive(serde::Serialize)]
    struct Meters(u32);

    #[test]
    fn previews_read_like_the_arguments_of_a_call() {
        assert_eq!(render_preview(&12u64), "12");
        assert_eq!(render_preview(&(12u64, "a\"b\n")), r#"12, "a\"b\n""#);
        assert_eq!(render_preview(&(1u8,)), "1");
        assert_eq!(render_preview(&((1u8, 2u8), 'c')), "(1, 2), 'c'");
        assert_eq!(
            render_preview(&(Point { x: 1, y: -2 }, Some(Meters(3)), None::<u8>)),
            "Point { x: 1, y: -2 }, Some(Meters(3)), None"
        );
        assert_eq!(
            render_preview(&vec![
                Shape::Dot,
                Shape::Circle(1.5),
                Shape::Rect { w: 2, h: 3 }
            ]),
            "[Dot, Circle(1.5), Rect { w: 2, h: 3 }]"
        );
        let map: BTreeMap<&str, Vec<u8>> = [("k", vec![1, 2])].into();
        assert_eq!(render_preview(&map), r#"{"k": [1, 2]}"#);
        assert_eq!(render_preview(&()), "()");
        #[derive(serde::Serialize)]
        struct Empty {}
        assert_eq!(render_preview(&(Empty {}, 1u8)), "Empty {}, 1");
    }

    #[test]
    fn long_previews_are_cut_on_a_character_boundary_with_an_ellipsis() {
        for text in ["x".repeat(10_000), "é".repeat(5_000), "日本".repeat(3_000)] {
            let shown = render_preview(&text);
            assert!(shown.len() <= MAX_PREVIEW_LEN, "{} bytes", shown.len());
            assert!(shown.starts_with('"') && shown.ends_with('…'), "{shown}");
            assert!(
                shown.len() >= MAX_PREVIEW_LEN - 6,
                "as much as fits: {shown}"
            );
        }
        // A long sequence stops rendering early.
        let shown = render_preview(&(0..100_000u32).collect::<Vec<_>>());
        assert!(shown.ends_with('…') && shown.len() <= MAX_PREVIEW_LEN);
        // Exactly at the bound: kept whole.
        let exact = "a".repeat(MAX_PREVIEW_LEN - 2);
        assert_eq!(render_preview(&exact).len(), MAX_PREVIEW_LEN);
        assert!(!render_preview(&exact).ends_with('…'));
        assert_eq!(cut("ab", 2), "ab");
    }
}
