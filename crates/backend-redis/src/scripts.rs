//! The Lua scripts that make claims, writes and cleanups atomic on the server.
//!
//! Every entry is a hash with the fields `value` (encoded bytes), `time` (µs since the Unix
//! epoch, by the server's clock), `completed` (`1` once a result is stored), `claim` (the
//! holder's token) and `lease` (µs deadline of the claim, by the server's clock). All times
//! come from `TIME` inside the script, so clients whose clocks disagree still agree.
//!
//! Every script that changes what an entry holds (a value stored, overwritten or deleted, a
//! claim ended) also `PUBLISH`es the change on the prefix's channel (`{prefix}:changes`), in
//! the same atomic step: the entry's Redis key for one entry, `{prefix}:{namespace}:*` for
//! any entry of a namespace. Near caches and waiters in every process listen there
//! (`listen.rs`). A claim taken or renewed changes no value and announces nothing. The
//! publish is a `pcall`: a user the server's ACL denies the channel still writes (its near
//! caches then never hear the channel and stay off, and its waiters poll).
//!
//! Lua numbers are doubles: µs timestamps (about 2^51 today) are exact, and they are written
//! with `%.0f` (Redis' own number-to-string conversion keeps only 14 digits).

use std::sync::LazyLock;

use redis::Script;

/// Shared helpers of the scripts off the hot path (renew, release, cleanups). The claim and
/// put scripts are written out in full: every `redis.call` costs about a microsecond, so they
/// make as few as they can (4 for a claim, 4 for a put).
macro_rules! prelude {
    () => {
        r#"
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function int(x) return string.format('%.0f', x) end
-- Anything but a hash at an entry's address is garbage (not ours): drop it.
local function hash_or_none(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' and kind ~= 'none' then
    redis.call('DEL', key)
    return 'none'
  end
  return kind
end
local function live(claim, lease, now)
  local deadline = tonumber(lease)
  return claim and deadline and deadline > now
end
"#
    };
}

/// `KEYS[1]` entry; `ARGV`: token, lease µs, lease ms, `1` if entries have a TTL. Returns 1
/// when claimed (or already ours: a retried request), 0 when another live claim exists. A
/// placeholder (no value) expires with its lease, so a crashed holder leaves nothing behind.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.pcall('HMGET', key, 'claim', 'lease', 'value')
if h['err'] then
  -- Not a hash: garbage at an entry's address, dropped.
  redis.call('DEL', key)
  h = {false, false, false}
end
local deadline = tonumber(h[2])
if h[1] and deadline and deadline > now then
  if h[1] == ARGV[1] then return 1 end
  return 0
end
local lease = string.format('%.0f', now + tonumber(ARGV[2]))
if not h[3] then
  redis.call('HSET', key, 'claim', ARGV[1], 'lease', lease, 'time', string.format('%.0f', now), 'completed', '0')
  redis.call('PEXPIRE', key, ARGV[3])
else
  redis.call('HSET', key, 'claim', ARGV[1], 'lease', lease)
  if ARGV[4] == '1' then
    local ttl = redis.call('PTTL', key)
    if ttl > 0 and ttl < tonumber(ARGV[3]) then redis.call('PEXPIRE', key, ARGV[3]) end
  end
end
return 1
"#,
    )
});

/// `KEYS[1]` entry; `ARGV`: value, token (or empty), eviction ms (0 = never), channel. Stores
/// the value and releases the token's claim in the same step, and announces it. Unless another holder's claim is
/// on the entry, the hash is rewritten from scratch, which also drops a placeholder's TTL.
pub(crate) static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key = KEYS[1]
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local claim = redis.pcall('HGET', key, 'claim')
if claim and not claim['err'] and claim ~= ARGV[2] then
  -- Someone else's claim: keep it, and the entry, which now holds a value, must not expire
  -- with their placeholder's lease.
  redis.call('HSET', key, 'value', ARGV[1], 'time', now, 'completed', '1')
  redis.call('PERSIST', key)
else
  redis.call('DEL', key)
  redis.call('HSET', key, 'value', ARGV[1], 'time', now, 'completed', '1')
end
if ARGV[3] ~= '0' then redis.call('PEXPIRE', key, ARGV[3]) end
redis.pcall('PUBLISH', ARGV[4], key)
return 1
"#,
    )
});

/// `KEYS[1]` entry; `ARGV`: token, lease µs, lease ms. Returns 0 when the claim is not ours
/// any more.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local key = KEYS[1]
local now = now_us()
if hash_or_none(key) ~= 'hash' or redis.call('HGET', key, 'claim') ~= ARGV[1] then return 0 end
redis.call('HSET', key, 'lease', int(now + tonumber(ARGV[2])))
local ttl = redis.call('PTTL', key)
if ttl > 0 and ttl < tonumber(ARGV[3]) then redis.call('PEXPIRE', key, ARGV[3]) end
return 1
"#
    ))
});

/// `KEYS[1]` entry; `ARGV`: token, channel. Drops the claim if it is the token's (a
/// placeholder, with no value, goes with it) and announces it, so waiters wake.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local key = KEYS[1]
if hash_or_none(key) ~= 'hash' or redis.call('HGET', key, 'claim') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', key, 'value') == 1 then
  redis.call('HDEL', key, 'claim', 'lease')
else
  redis.call('DEL', key)
end
redis.pcall('PUBLISH', ARGV[2], key)
return 1
"#
    ))
});

/// `KEYS[1]` entry; `ARGV[1]` channel. Deletes its value; returns 1 if there was one. Under a live claim the
/// hash stays as a claim-only placeholder, which expires with the claim's lease like one the
/// claim made; otherwise the whole hash goes (garbage too).
pub(crate) static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local key = KEYS[1]
if hash_or_none(key) ~= 'hash' then return 0 end
local h = redis.call('HMGET', key, 'claim', 'lease', 'completed')
local had = redis.call('HEXISTS', key, 'value') == 1 and h[3] == '1'
local now = now_us()
if live(h[1], h[2], now) then
  if not had then return 0 end
  redis.call('HDEL', key, 'value')
  redis.call('HSET', key, 'completed', '0')
  redis.call('PEXPIRE', key, math.max(1, math.ceil((tonumber(h[2]) - now) / 1000)))
else
  redis.call('DEL', key)
end
redis.pcall('PUBLISH', ARGV[1], key)
if had then return 1 end
return 0
"#
    ))
});

/// `KEYS`: a batch of entries; `ARGV`: channel, the namespace's message. Drops every claim
/// (and claim-only placeholders); returns how many claims went, announced when any did.
pub(crate) static UNCLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key)['ok'] == 'hash' and redis.call('HEXISTS', key, 'claim') == 1 then
    if redis.call('HEXISTS', key, 'value') == 1 then
      redis.call('HDEL', key, 'claim', 'lease')
    else
      redis.call('DEL', key)
    end
    n = n + 1
  end
end
if n > 0 then redis.pcall('PUBLISH', ARGV[1], ARGV[2]) end
return n
"#
    ))
});

/// `KEYS`: a batch of entries; `ARGV`: channel, the namespace's message. Deletes them all and
/// announces it.
pub(crate) static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('UNLINK', unpack(KEYS))
redis.pcall('PUBLISH', ARGV[1], ARGV[2])
return #KEYS
"#,
    )
});

/// `KEYS`: a batch of entries; `ARGV`: the age limit in µs, channel, the namespace's message. Deletes entries older than
/// the limit (and garbled ones), except those under a live claim; returns how many, announced
/// when any.
pub(crate) static DELETE_STALE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local now = now_us()
local limit = tonumber(ARGV[1])
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key)['ok'] == 'hash' then
    local h = redis.call('HMGET', key, 'time', 'claim', 'lease')
    if not live(h[2], h[3], now) then
      local t = tonumber(h[1])
      if not t or now - t > limit then
        redis.call('DEL', key)
        n = n + 1
      end
    end
  end
end
if n > 0 then redis.pcall('PUBLISH', ARGV[2], ARGV[3]) end
return n
"#
    ))
});

const _: () = assert!(
    cachier_core::codec::PREVIEW_PREFIX_LEN == 123,
    "the prefix LIST reads"
);

/// `KEYS`: a batch of entries. Lists them without their values: returns the server's clock
/// (`TIME`'s seconds and microseconds), then six items per key: `time`, `completed`,
/// `claim`, `lease` (nil when absent), the value's length in bytes (`HSTRLEN`; -1 when
/// there is no value) and its first 123 bytes, which hold the arguments' preview (nil
/// without a value). A key that is gone or not a hash reads as all nil.
pub(crate) static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local out = {t[1], t[2]}
for _, key in ipairs(KEYS) do
  local h = redis.pcall('HMGET', key, 'time', 'completed', 'claim', 'lease')
  if h['err'] then h = {false, false, false, false} end
  local size = -1
  if h[1] then
    size = redis.call('HSTRLEN', key, 'value')
    if size == 0 and redis.call('HEXISTS', key, 'value') == 0 then size = -1 end
  end
  out[#out + 1] = h[1]
  out[#out + 1] = h[2]
  out[#out + 1] = h[3]
  out[#out + 1] = h[4]
  out[#out + 1] = size
  -- The value's first bytes hold the arguments' preview; only they cross the wire.
  local head = false
  if size > 0 then head = string.sub(redis.call('HGET', key, 'value'), 1, 123) end
  out[#out + 1] = head
end
return out
"#,
    )
});
