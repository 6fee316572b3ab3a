//! The canonical encoding of arguments: postcard's, except that the entries of every map are
//! written in one order whatever order the map yields them in, so a `HashMap` (whose order
//! differs in every process) gets the same key everywhere.
//!
//! The order is that of the entries' keys as values (numbers by value, text and sequences
//! lexicographically, enum variants by declaration, `None` first), which is the order of
//! `Ord` for the standard types and for keys with derived `Ord` and `Serialize`. A `BTreeMap`
//! of such keys is therefore written exactly as before, and its keys are unchanged. Anything
//! else is forwarded to postcard untouched.

use serde::ser::{
    self, Error as _, Serialize, SerializeMap, SerializeSeq, SerializeStruct,
    SerializeStructVariant, SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
    Serializer,
};

/// `T`, serialized canonically by whichever serializer it is given (postcard's).
pub(crate) struct Canonical<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Canonical<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Sorting(serializer))
    }
}

/// Forwards to `S`, sorting maps and wrapping every nested value in [`Canonical`].
struct Sorting<S>(S);

/// A compound of `S` whose elements are wrapped in [`Canonical`].
struct Elements<C>(C);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.0.$method($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Elements<S::SerializeSeq>;
    type SerializeTuple = Elements<S::SerializeTuple>;
    type SerializeTupleStruct = Elements<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Elements<S::SerializeTupleVariant>;
    type SerializeMap = SortedMap<S>;
    type SerializeStruct = Elements<S::SerializeStruct>;
    type SerializeStructVariant = Elements<S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Canonical(value))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Canonical(value))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Canonical(value))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Elements)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Elements)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Elements)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Elements)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<SortedMap<S>, S::Error> {
        Ok(SortedMap {
            serializer: self.0,
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Elements)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Elements)
    }
    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! elements {
    ($($trait:ident { $($method:ident($($field:ident: $ty:ty),*);)* })*) => {
        $(impl<C: $trait> $trait for Elements<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            $(fn $method<T: Serialize + ?Sized>(&mut self, $($field: $ty,)* value: &T) -> Result<(), C::Error> {
                self.0.$method($($field,)* &Canonical(value))
            })*
            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        })*
    };
}

elements! {
    SerializeSeq { serialize_element(); }
    SerializeTuple { serialize_element(); }
    SerializeTupleStruct { serialize_field(); }
    SerializeTupleVariant { serialize_field(); }
    SerializeStruct { serialize_field(key: &'static str); }
    SerializeStructVariant { serialize_field(key: &'static str); }
}

/// A map's entries, each encoded on its own, written in canonical order at the end.
struct SortedMap<S> {
    serializer: S,
    entries: Vec<Entry>,
    key: Option<(Order, Vec<u8>)>,
}

struct Entry {
    order: Order,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn encode<T: Serialize + ?Sized, E: ser::Error>(value: &T) -> Result<Vec<u8>, E> {
    postcard::to_allocvec(&Canonical(value)).map_err(E::custom)
}

impl<S: Serializer> SerializeMap for SortedMap<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        let order = key.serialize(OrderOf).map_err(S::Error::custom)?;
        self.key = Some((order, encode(key)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let (order, key) = self
            .key
            .take()
            .ok_or_else(|| S::Error::custom("a map value without its key"))?;
        self.entries.push(Entry {
            order,
            key,
            value: encode(value)?,
        });
        Ok(())
    }
    fn end(mut self) -> Result<S::Ok, S::Error> {
        self.entries
            .sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.key.cmp(&b.key)));
        let mut map = self.serializer.serialize_map(Some(self.entries.len()))?;
        for entry in &self.entries {
            map.serialize_entry(&Raw(&entry.key), &Raw(&entry.value))?;
        }
        map.end()
    }
}

/// Bytes already encoded: postcard writes a tuple as its elements and a `u8` as itself, so
/// they pass through unchanged.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for byte in self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

/// A map key as a value of serde's data model, ordered as the standard types order: the
/// variants compared first (only `None` and `Some` meet in one map), then their contents.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Order {
    Unit,
    None,
    Some(Box<Order>),
    Bool(bool),
    Unsigned(u128),
    Signed(i128),
    /// An `f64`'s bits, transformed so that integer order is the float's total order.
    Float(u64),
    Char(char),
    /// A string or bytes.
    Text(Vec<u8>),
    Variant(u32, Box<Order>),
    /// A sequence, a tuple or a struct's fields.
    Seq(Vec<Order>),
    Map(Vec<(Order, Order)>),
}

fn float_order(value: f64) -> Order {
    let bits = value.to_bits();
    let sign = 1 << 63;
    Order::Float(if bits & sign == 0 { bits | sign } else { !bits })
}

/// Builds the [`Order`] of a map key.
struct OrderOf;

/// The fields of a compound being turned into an [`Order`].
struct OrderFields {
    variant: Option<u32>,
    fields: Vec<Order>,
    pending: Option<Order>,
    map: Vec<(Order, Order)>,
}

impl OrderFields {
    fn new(variant: Option<u32>, len: usize) -> Self {
        OrderFields {
            variant,
            fields: Vec::with_capacity(len),
            pending: None,
            map: Vec::new(),
        }
    }
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), postcard::Error> {
        self.fields.push(value.serialize(OrderOf)?);
        Ok(())
    }
    fn finish(self) -> Order {
        let seq = Order::Seq(self.fields);
        match self.variant {
            Some(index) => Order::Variant(index, Box::new(seq)),
            None => seq,
        }
    }
}

impl Serializer for OrderOf {
    type Ok = Order;
    type Error = postcard::Error;
    type SerializeSeq = OrderFields;
    type SerializeTuple = OrderFields;
    type SerializeTupleStruct = OrderFields;
    type SerializeTupleVariant = OrderFields;
    type SerializeMap = OrderFields;
    type SerializeStruct = OrderFields;
    type SerializeStructVariant = OrderFields;

    fn serialize_bool(self, v: bool) -> Result<Order, Self::Error> {
        Ok(Order::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Order, Self::Error> {
        Ok(Order::Signed(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Order, Self::Error> {
        Ok(Order::Signed(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Order, Self::Error> {
        Ok(Order::Signed(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Order, Self::Error> {
        Ok(Order::Signed(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<Order, Self::Error> {
        Ok(Order::Signed(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Order, Self::Error> {
        Ok(Order::Unsigned(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Order, Self::Error> {
        Ok(Order::Unsigned(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Order, Self::Error> {
        Ok(Order::Unsigned(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Order, Self::Error> {
        Ok(Order::Unsigned(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<Order, Self::Error> {
        Ok(Order::Unsigned(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Order, Self::Error> {
        Ok(float_order(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Order, Self::Error> {
        Ok(float_order(v))
    }
    fn serialize_char(self, v: char) -> Result<Order, Self::Error> {
        Ok(Order::Char(v))
    }
    fn serialize_str(self, v: &str) -> Result<Order, Self::Error> {
        Ok(Order::Text(v.as_bytes().to_vec()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Order, Self::Error> {
        Ok(Order::Text(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Order, Self::Error> {
        Ok(Order::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Order, Self::Error> {
        Ok(Order::Some(Box::new(value.serialize(OrderOf)?)))
    }
    fn serialize_unit(self) -> Result<Order, Self::Error> {
        Ok(Order::Unit)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Order, Self::Error> {
        Ok(Order::Unit)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
    ) -> Result<Order, Self::Error> {
        Ok(Order::Variant(index, Box::new(Order::Unit)))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Order, Self::Error> {
        value.serialize(OrderOf)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<Order, Self::Error> {
        Ok(Order::Variant(index, Box::new(value.serialize(OrderOf)?)))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<OrderFields, Self::Error> {
        Ok(OrderFields::new(None, len.unwrap_or(0)))
    }
    fn serialize_tuple(self, len: usize) -> Result<OrderFields, Self::Error> {
        Ok(OrderFields::new(None, len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<OrderFields, Self::Error> {
        Ok(OrderFields::new(None, len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        len: usize,
    ) -> Result<OrderFields, Self::Error> {
        Ok(OrderFields::new(Some(index), len))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<OrderFields, Self::Error> {
        Ok(OrderFields::new(None, 0))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<OrderFields, Self::Error> {
        Ok(OrderFields::new(None, len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        len: usize,
    ) -> Result<OrderFields, Self::Error> {
        Ok(OrderFields::new(Some(index), len))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! order_fields {
    ($($trait:ident { $method:ident($($field:ident: $ty:ty),*) })*) => {
        $(impl $trait for OrderFields {
            type Ok = Order;
            type Error = postcard::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, $(_: $ty,)* value: &T) -> Result<(), Self::Error> {
                self.push(value)
            }
            fn end(self) -> Result<Order, Self::Error> {
                Ok(self.finish())
            }
        })*
    };
}

order_fields! {
    SerializeSeq { serialize_element() }
    SerializeTuple { serialize_element() }
    SerializeTupleStruct { serialize_field() }
    SerializeTupleVariant { serialize_field() }
    SerializeStruct { serialize_field(key: &'static str) }
    SerializeStructVariant { serialize_field(key: &'static str) }
}

impl SerializeMap for OrderFields {
    type Ok = Order;
    type Error = postcard::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.pending = Some(key.serialize(OrderOf)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        let key = self
            .pending
            .take()
            .ok_or_else(|| postcard::Error::custom("a map value without its key"))?;
        self.map.push((key, value.serialize(OrderOf)?));
        Ok(())
    }
    fn end(mut self) -> Result<Order, Self::Error> {
        self.map.sort();
        Ok(Order::Map(self.map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order<T: Serialize>(value: &T) -> Order {
        value.serialize(OrderOf).unwrap()
    }

    #[test]
    fn orders_like_ord() {
        assert!(order(&-300i64) < order(&-1i64) && order(&-1i64) < order(&128i64));
        assert!(order(&"b") > order(&"aa") && order(&"a") < order(&"aa"));
        assert!(order(&None::<u8>) < order(&Some(0u8)));
        assert!(order(&(1u8, "zz")) < order(&(2u8, "a")));
        assert!(order(&-0.5f64) < order(&0.0f64) && order(&0.0f64) < order(&2.5f64));
        assert!(order(&f64::NEG_INFINITY) < order(&-1e300f64));
        assert!(order(&vec![1u8]) < order(&vec![1u8, 0]));
    }
}
