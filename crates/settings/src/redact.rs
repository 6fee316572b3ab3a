//! URLs as they may be shown: passwords replaced, so `Debug` output and logs never leak them.
//! Every backend that takes a URL uses this one function.

/// `url` with the password of its user info and any `pass`/`password` query parameter
/// replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            // The user info ends at the last '@' before the path.
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((user_info, host)) => {
                    match user_info.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        // `redis://secret@host`: a lone user info is the password.
                        None if !user_info.is_empty() => out.push_str("***"),
                        None => {}
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        // PostgreSQL's `key=value` connection strings.
        None => {
            let pairs: Vec<&str> = before_query
                .split(' ')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_password(name) => "password=***",
                    _ => pair,
                })
                .collect();
            out.push_str(&pairs.join(" "));
        }
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_password(name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn is_password(name: &str) -> bool {
    matches!(name.to_ascii_lowercase().as_str(), "pass" | "password")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

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
}
