//! Keys of map arguments are canonical (the same whatever the map's iteration order), and the
//! keys of every other argument, `BTreeMap`s included, stay what they were, so existing caches
//! stay valid.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher};

use cachier_core::Key;
use serde::Serialize;

#[derive(Serialize)]
#[allow(dead_code)] // the variants before `Rect` set its index
enum Shape {
    Dot,
    Circle(f64),
    Rect { w: u32, h: u32 },
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, Clone)]
enum Tag {
    Low,
    High(i8),
}

#[derive(Serialize)]
struct Query {
    name: String,
    limits: BTreeMap<String, u64>,
    tags: BTreeSet<String>,
    shape: Shape,
    owner: Option<char>,
}

fn hex<T: Serialize + ?Sized>(value: &T) -> String {
    Key::of(value).expect("encodes").to_hex()
}

/// Keys as derived before maps were made canonical, for arguments of every shape; a change
/// here would orphan every entry users have stored.
#[test]
fn keys_of_existing_argument_types_are_unchanged() {
    let strings: BTreeMap<String, u32> = [("b", 1), ("aa", 2), ("c", 3), ("ab", 4)]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
    let ints: BTreeMap<i64, String> = [(-300, "a"), (2, "b"), (128, "c"), (-1, "d"), (0, "e")]
        .map(|(k, v)| (k, v.to_owned()))
        .into();
    let tuples: BTreeMap<(u8, String), Vec<u32>> = [
        ((2, "a".to_owned()), vec![1]),
        ((1, "zz".to_owned()), vec![]),
        ((1, "b".to_owned()), vec![7, 8]),
    ]
    .into();
    let enums: BTreeMap<Tag, bool> = [
        (Tag::High(-5), true),
        (Tag::Low, false),
        (Tag::High(3), true),
    ]
    .into();
    let options: BTreeMap<Option<u16>, ()> = [(Some(500), ()), (None, ()), (Some(1), ())].into();
    let nested: BTreeMap<String, BTreeMap<u32, u32>> = [
        ("k".to_owned(), [(300, 1), (1, 2)].into()),
        ("a".to_owned(), BTreeMap::new()),
    ]
    .into();
    let query = Query {
        name: "q".into(),
        limits: [
            ("b".to_owned(), 2),
            ("aa".to_owned(), 300),
            ("c".to_owned(), 1),
        ]
        .into(),
        tags: ["x".to_owned(), "yy".to_owned()].into(),
        shape: Shape::Rect { w: 3, h: 4 },
        owner: Some('é'),
    };
    let pinned = [
        (
            hex(&(1u64, 2u64)),
            "5e98aaa886032724db1ffd795b2f63b93a1d90f236e77eabfcc2913e4dd6e1d6",
        ),
        (
            hex(&strings),
            "a963a868698f796d7436e34e675ceda31ddc638eb641e8bcdd5212643ed79d1e",
        ),
        (
            hex(&ints),
            "2d3d7077683ba27f47787007262515fb035cde604cf9c4057644094e5d402f8d",
        ),
        (
            hex(&tuples),
            "ffc38e49baa93f519ac0b4d98b1967ccc43f4ad2c6df4eb8dc0eb517884f3f06",
        ),
        (
            hex(&enums),
            "c22238893409d021811e57677aa4d368e7214d013cb7596e65785c61223aad8a",
        ),
        (
            hex(&options),
            "21a425e8293a0033cda4479a8226831581a83e11345327593f7ca4c99f600c14",
        ),
        (
            hex(&nested),
            "027253900d438120234bd9866a065573bfa25867e0e1e6279f1989e2f243b2fe",
        ),
        (
            hex(&query),
            "9c8d74573a576037ebcc95c7b2dabe9e9e57c7a243bf6d24ecd5b84b8cce1ce0",
        ),
        (
            hex(&vec!["b", "a"]),
            "8d7e055e764bba238cd0a7cec6e7dc4ff5ef784c80504fef334227aecdfcce88",
        ),
        (
            hex(&(-1.5f64, i128::MIN, u128::MAX)),
            "a7ad66114465a0d27de3086f7afe52bf7fd11bd2468df83f839e0f44b4d35e94",
        ),
    ];
    for (i, (now, before)) in pinned.iter().enumerate() {
        assert_eq!(now, before, "argument {i}'s key changed");
    }
}

/// A hasher seeded per map, so that two maps with the same entries iterate in different
/// orders, as two processes' `HashMap`s do.
#[derive(Clone)]
struct Seeded(u64);

impl BuildHasher for Seeded {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        let mut hasher = BuildHasherDefault::<DefaultHasher>::default().build_hasher();
        hasher.write_u64(self.0);
        hasher
    }
}

fn seeded_map<K: std::hash::Hash + Eq, V>(
    seed: u64,
    entries: impl IntoIterator<Item = (K, V)>,
) -> HashMap<K, V, Seeded> {
    let mut map = HashMap::with_hasher(Seeded(seed));
    map.extend(entries);
    map
}

#[test]
fn hash_maps_have_one_key_whatever_their_order() {
    let entries = || (0..64u32).map(|i| (format!("k{i}"), vec![i; (i % 3) as usize]));
    let orders: BTreeSet<Vec<String>> = (0..8)
        .map(|seed| seeded_map(seed, entries()).into_keys().collect())
        .collect();
    assert!(
        orders.len() > 1,
        "the seeds give different iteration orders"
    );
    let keys: BTreeSet<Key> = (0..8)
        .map(|seed| Key::of(&seeded_map(seed, entries())).unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "one key for one set of entries");
    // ...the key of the same entries in a `BTreeMap`, and of `std`'s `HashMap`.
    let btree: BTreeMap<String, Vec<u32>> = entries().collect();
    let std_map: HashMap<String, Vec<u32>> = entries().collect();
    assert_eq!(keys.first(), Some(&Key::of(&btree).unwrap()));
    assert_eq!(keys.first(), Some(&Key::of(&std_map).unwrap()));

    // Nested maps and maps inside other arguments, keyed by enums and tuples.
    let nested = |seed| {
        (
            "name",
            seeded_map(
                seed,
                (0..16i8).map(|i| {
                    let tag = if i % 2 == 0 { Tag::Low } else { Tag::High(i) };
                    ((tag, i), seeded_map(seed + 100, (0..i).map(|j| (j, -j))))
                }),
            ),
            Some(7u8),
        )
    };
    let first = Key::of(&nested(0)).unwrap();
    for seed in 1..8 {
        assert_eq!(Key::of(&nested(seed)).unwrap(), first);
    }
    // Different entries still give different keys.
    let mut other = std_map.clone();
    other.insert("k0".to_owned(), vec![1]);
    assert_ne!(Key::of(&other).unwrap(), Key::of(&std_map).unwrap());
}
