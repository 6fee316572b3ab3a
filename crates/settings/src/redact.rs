//! URLs as they may be shown: passwords replaced, so `Debug` output, error messages and logs
//! never leak them. Every backend that takes a URL uses these functions.
//!
//! Malformed URLs are common exactly where a password is shown (in the error about them), so
//! nothing here trusts the URL to be well formed: the user info ends at the *last* `@` of the
//! authority, even when a `/`, `?` or `#` comes before it (an unencoded password may hold any
//! of them), and whatever could be part of a password is hidden rather than shown.

/// `url` with the password of its user info, any secret query parameter (`pass`, `password`,
/// `pwd`, `secret`, `token`...) and any `password=` of a libpq `key=value` string replaced by
/// `***`. A user info without `:` is hidden whole (some clients read it as a password).
pub fn redact_url(url: &str) -> String {
    match Parsed::of(url) {
        Parsed::ConnInfo => redact_conninfo(url),
        Parsed::Url {
            scheme,
            user_info,
            rest,
        } => {
            let mut out = String::with_capacity(url.len());
            out.push_str(scheme);
            if let Some(user_info) = user_info {
                match UserInfo::of(user_info) {
                    UserInfo::Empty => {}
                    UserInfo::UserAndPassword { user, .. } => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    UserInfo::Hidden => out.push_str("***"),
                }
                out.push('@');
            }
            let (before_fragment, fragment) = split_at_first(rest, '#');
            let (before_query, query) = split_at_first(before_fragment, '?');
            out.push_str(before_query);
            if let Some(query) = query {
                out.push('?');
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((name, _)) if is_secret(name) => format!("{name}=***"),
                        _ => pair.to_owned(),
                    })
                    .collect();
                out.push_str(&pairs.join("&"));
            }
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
            out
        }
    }
}

/// `message`, a text about `url` (typically a driver's error), with the URL replaced by its
/// [`redact_url`] form and every secret of the URL replaced by `***`: as written,
/// percent-decoded, and the pieces between characters a parser may stop at, since drivers
/// may quote any of them.
pub fn redact_message(url: &str, message: &str) -> String {
    let mut message = if url.is_empty() {
        message.to_owned()
    } else {
        message.replace(url, &redact_url(url))
    };
    let mut secrets: Vec<String> = Vec::new();
    for secret in url_secrets(url) {
        // A driver that cuts the URL elsewhere (at the first `?`, say) quotes pieces.
        let pieces = secret.split(['/', '?', '#', '@', ':', '&', '=']);
        for piece in std::iter::once(secret).chain(pieces) {
            secrets.push(piece.to_owned());
            secrets.push(percent_decoded(piece));
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = replace_secret(&message, secret);
    }
    message
}

enum Parsed<'a> {
    /// A libpq `key=value` string.
    ConnInfo,
    Url {
        /// `scheme://`, or empty when the URL has none.
        scheme: &'a str,
        /// Everything before the authority's last `@`.
        user_info: Option<&'a str>,
        /// Hosts, path, query and fragment.
        rest: &'a str,
    },
}

impl<'a> Parsed<'a> {
    fn of(url: &'a str) -> Parsed<'a> {
        let (scheme, rest) = match url.find("://") {
            Some(end) if is_scheme(&url[..end]) => url.split_at(end + 3),
            _ => {
                let first_word = url.split_whitespace().next().unwrap_or("");
                if first_word
                    .split_once('=')
                    .is_some_and(|(key, _)| !key.contains([':', '/', '@']))
                    || url
                        .split_whitespace()
                        .nth(1)
                        .is_some_and(|w| w.starts_with('='))
                {
                    return Parsed::ConnInfo;
                }
                ("", url)
            }
        };
        // An empty authority (`file:///dir`, `redis+unix:///path`) has no user info; otherwise
        // the user info ends at the last `@`, wherever the path seems to start.
        let user_info_end = if rest.starts_with('/') {
            None
        } else {
            rest.rfind('@')
        };
        match user_info_end {
            Some(at) => Parsed::Url {
                scheme,
                user_info: Some(&rest[..at]),
                rest: &rest[at + 1..],
            },
            None => Parsed::Url {
                scheme,
                user_info: None,
                rest,
            },
        }
    }
}

fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// What a URL's user info may show.
enum UserInfo<'a> {
    Empty,
    /// `user:password`: the user name may be shown.
    UserAndPassword {
        user: &'a str,
        password: &'a str,
    },
    /// No `:`, or a user name holding a character that ends an authority (a parser may split
    /// the URL there, making it part of a password): nothing is shown.
    Hidden,
}

impl<'a> UserInfo<'a> {
    fn of(user_info: &'a str) -> UserInfo<'a> {
        match user_info.split_once(':') {
            _ if user_info.is_empty() => UserInfo::Empty,
            Some((user, password)) if !user.contains(['/', '?', '#', '@']) => {
                UserInfo::UserAndPassword { user, password }
            }
            _ => UserInfo::Hidden,
        }
    }
}

/// The parts of `url` that are secret: the password (or the whole user info when it has no
/// plain user name), and the values of secret parameters.
fn url_secrets(url: &str) -> Vec<&str> {
    let mut secrets = Vec::new();
    match Parsed::of(url) {
        Parsed::ConnInfo => {
            let mut rest = url;
            while let Some((key, value, after)) = next_pair(rest) {
                if is_secret(key) {
                    secrets.push(value.trim_matches('\''));
                }
                rest = after;
            }
        }
        Parsed::Url {
            scheme,
            user_info,
            rest,
        } => {
            match user_info.map(UserInfo::of) {
                Some(UserInfo::UserAndPassword { password, .. }) => secrets.push(password),
                // A lone user info is a user name to PostgreSQL and MongoDB, whose messages
                // about it must stay readable; only Redis URLs may mean a password by it, and
                // a malformed one may be a password anywhere.
                Some(UserInfo::Hidden)
                    if user_info.is_some_and(|u| u.contains([':', '/', '?', '#', '@']))
                        || scheme.starts_with("redis") =>
                {
                    secrets.extend(user_info);
                }
                _ => {}
            }
            let (before_fragment, _) = split_at_first(rest, '#');
            if let (_, Some(query)) = split_at_first(before_fragment, '?') {
                for pair in query.split('&') {
                    if let Some((name, value)) = pair.split_once('=') {
                        if is_secret(name) {
                            secrets.push(value);
                        }
                    }
                }
            }
        }
    }
    secrets
}

/// `message` with `secret` replaced. A short secret is replaced only where it stands alone:
/// replacing every `p` of a message would both garble it and reveal the password.
fn replace_secret(message: &str, secret: &str) -> String {
    if secret.chars().count() >= 4 {
        return message.replace(secret, "***");
    }
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(secret) {
        let before = match at {
            0 => out.chars().next_back(),
            _ => rest[..at].chars().next_back(),
        };
        let after = rest[at + secret.len()..].chars().next();
        out.push_str(&rest[..at]);
        if is_word(before) || is_word(after) {
            out.push_str(secret);
        } else {
            out.push_str("***");
        }
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

fn split_at_first(text: &str, separator: char) -> (&str, Option<&str>) {
    match text.split_once(separator) {
        Some((head, tail)) => (head, Some(tail)),
        None => (text, None),
    }
}

/// A libpq `key=value` string with secret values replaced; other text unchanged.
fn redact_conninfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((key, value, after)) = next_pair(rest) {
        let value_at = rest.len() - after.len() - value.len();
        out.push_str(&rest[..value_at]);
        out.push_str(if is_secret(key) { "***" } else { value });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The next `key = value` of a libpq string: the key, the value as written (quotes
/// included) and the text after it. Words without `=` are skipped.
fn next_pair(text: &str) -> Option<(&str, &str, &str)> {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return None;
        }
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let Some(after_equals) = after_key.strip_prefix('=') else {
            rest = after_key;
            continue;
        };
        let value_text = after_equals.trim_start();
        let value_len = if let Some(quoted) = value_text.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let closes = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            });
            close.map_or(value_text.len(), |(i, _)| i + 2)
        } else {
            value_text
                .find(char::is_whitespace)
                .unwrap_or(value_text.len())
        };
        let (value, after) = value_text.split_at(value_len);
        return Some((key, value, after));
    }
}

/// Whether a query parameter or libpq key holds a secret.
fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "pass" | "pwd")
        || name.contains("passw")
        || name.contains("secret")
        || name.contains("token")
}

/// `text` with `%XX` escapes decoded (invalid ones kept as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{redact_message, redact_url};

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://user:s3cret@host:6379/2"),
            "redis://user:***@host:6379/2"
        );
        assert_eq!(redact_url("redis://:s3cret@host"), "redis://:***@host");
        assert_eq!(redact_url("rediss://s3cret@host/1"), "rediss://***@host/1");
        assert_eq!(redact_url("redis://u:p@ss@host/1"), "redis://u:***@host/1");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret&user=me"),
            "redis+unix:///run/redis.sock?db=1&pass=***&user=me"
        );
        assert_eq!(
            redact_url("redis+cluster://user:s3cret@h1:7000,h2:7001/"),
            "redis+cluster://user:***@h1:7000,h2:7001/"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("host=db user=app password=s3cret dbname=cache"),
            "host=db user=app password=*** dbname=cache"
        );
        assert_eq!(
            redact_url("mongodb://user:s3cret@host:27017/db?x=1"),
            "mongodb://user:***@host:27017/db?x=1"
        );
    }

    /// Every secret of every URL below: none may survive `redact_url`.
    const SECRET: &str = "S3cret";

    fn hidden(url: &str) -> String {
        let shown = redact_url(url);
        assert!(!shown.contains(SECRET), "{url} shown as {shown}");
        shown
    }

    #[test]
    fn user_info_ends_at_the_last_at_sign() {
        assert_eq!(
            hidden("redis://user:S3cret/Pw@127.0.0.1:1/0"),
            "redis://user:***@127.0.0.1:1/0"
        );
        assert_eq!(
            hidden("postgres://user:S3cret?Pw@127.0.0.1:1/test"),
            "postgres://user:***@127.0.0.1:1/test"
        );
        assert_eq!(
            hidden("redis://u:S3cret#Pw@127.0.0.1:1/0"),
            "redis://u:***@127.0.0.1:1/0"
        );
        assert_eq!(
            hidden("redis://u:S3c@ret@host/1?db=2"),
            "redis://u:***@host/1?db=2"
        );
        assert_eq!(hidden("redis://u:S3cret/?#@host/1"), "redis://u:***@host/1");
        // No `:` in the user info: all of it may be the password.
        assert_eq!(hidden("redis://S3cret/x@host/1"), "redis://***@host/1");
        // A user name that a parser may split elsewhere is not shown either.
        assert_eq!(hidden("redis://us/er:S3cret@host"), "redis://***@host");
    }

    #[test]
    fn every_url_form_hides_its_password() {
        assert_eq!(hidden("rediss://:S3cret@host"), "rediss://:***@host");
        assert_eq!(
            hidden("mongodb+srv://u:S3cret@cluster.example.com/db?retryWrites=true"),
            "mongodb+srv://u:***@cluster.example.com/db?retryWrites=true"
        );
        assert_eq!(
            hidden("mongodb://u:S3cret@h1,h2:27018/db?replicaSet=rs"),
            "mongodb://u:***@h1,h2:27018/db?replicaSet=rs"
        );
        assert_eq!(
            hidden("mongodb://u:S3c@ret@h1,h2/"),
            "mongodb://u:***@h1,h2/"
        );
        // No scheme.
        assert_eq!(hidden("u:S3cret@host:6379/0"), "u:***@host:6379/0");
        assert_eq!(hidden("u:S3cret/x@host"), "u:***@host");
        // Unix sockets and query parameters.
        assert_eq!(
            hidden("redis+unix:///run/redis.sock?pass=S3cret"),
            "redis+unix:///run/redis.sock?pass=***"
        );
        assert_eq!(
            hidden("redis+unix:///run/r.sock?db=1&password=S3cret&pwd=S3cret&secret=S3cret&token=S3cret&user=me"),
            "redis+unix:///run/r.sock?db=1&password=***&pwd=***&secret=***&token=***&user=me"
        );
        assert_eq!(
            hidden("redis+unix:///run/r.sock?pass=S3c@ret&db=1"),
            "redis+unix:///run/r.sock?pass=***&db=1"
        );
        assert_eq!(
            hidden("postgres://u@host/db?sslpassword=S3cret&PassWord=S3cret#frag"),
            "postgres://***@host/db?sslpassword=***&PassWord=***#frag"
        );
        // libpq key=value strings, quoted values included.
        assert_eq!(
            hidden("host=db password='S3cret with spaces' user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            hidden("host=db password = S3cret"),
            "host=db password = ***"
        );
        // Nothing secret: unchanged.
        for url in [
            "sqlite::memory:",
            "memory:",
            "file:///tmp/x?separate_files=true",
            "rediss://host:6380/0#insecure",
            "mongodb://h1,h2/?directConnection=true",
            "just-a-name",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn messages_lose_the_secrets_of_their_url() {
        let url = "postgres://user:S3cret?Pw@127.0.0.1:1/test";
        let message = format!("cannot connect to {url}: password \"S3cret?Pw\" refused");
        let shown = redact_message(url, &message);
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(
            shown.contains("postgres://user:***@127.0.0.1:1/test"),
            "{shown}"
        );
        // Pieces of it, as a driver that cuts the URL at the first `?` shows them.
        let shown = redact_message(
            "mongodb://u:S3cret?Pw@127.0.0.1:1/",
            "invalid server address u:S3cret: the port must be an integer, got S3cret",
        );
        assert!(!shown.contains(SECRET), "{shown}");
        // Percent-decoded too.
        let shown = redact_message("redis://u:S3cret%2FPw@h/0", "bad password S3cret/Pw");
        assert_eq!(shown, "bad password ***");
        // Query secrets.
        let shown = redact_message("redis+unix:///s?pass=S3cret", "AUTH S3cret failed");
        assert_eq!(shown, "AUTH *** failed");
        // A user name is no secret: the server's message about it stays readable.
        let shown = redact_message(
            "postgres://nosuchuser@127.0.0.1/test",
            "FATAL: role \"nosuchuser\" does not exist",
        );
        assert_eq!(shown, "FATAL: role \"nosuchuser\" does not exist");
        // Unless the URL is malformed: then that "user name" may be a password.
        let shown = redact_message(
            "postgres://S3cret?Pw@127.0.0.1/test",
            "FATAL: role \"S3cret?Pw\" does not exist",
        );
        assert!(!shown.contains(SECRET), "{shown}");
        // A short password is replaced where it stands alone, not inside words.
        let shown = redact_message("mongodb://u:p@h1,h2/", "bad password p for a user");
        assert_eq!(shown, "bad password *** for a user");
    }
}
