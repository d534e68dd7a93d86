//! What a story's address is: the canonical URL that recognises it across feeds
//! and fetches, apart from the link a reader is sent (the one the feed gave,
//! resolved). In: links as feeds write them. Out: canonical URLs.

use url::Url;

/// `href` made absolute against `base`; `None` for an empty link or one that is
/// not http(s) once resolved.
pub(super) fn resolve_url(href: &str, base: Option<&Url>) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() {
        return None;
    }
    let url = match (Url::parse(href), base) {
        (Ok(u), _) => u,
        (Err(url::ParseError::RelativeUrlWithoutBase), Some(b)) => b.join(href).ok()?,
        _ => return None,
    };
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Query parameters that only track where a click came from; they never change
/// which story a URL names.
const TRACKING_PARAMS: &[&str] = &[
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid",
    "mc_eid", "_ga", "_gl", "ref_src", "ref_url", "cmpid", "spm", "share", "amp",
];

/// Whether two links name the same story: equal, or equal in canonical form
/// (a pin copied with tracking parameters names the stored story).
pub fn same_story(a: &str, b: &str) -> bool {
    a == b || canonical_url(a).is_some_and(|x| Some(x) == canonical_url(b))
}

/// The one URL a story is known by: https, host without `www.`/`m.`, no default
/// port, no fragment, no tracking parameters (`utm_*`, `fbclid`, …), remaining
/// parameters sorted, no trailing slash. `None` when `link` is not an http(s) URL.
/// It identifies a story; it is never the link a reader is sent (a site may
/// serve only http, or only `www.`).
pub fn canonical_url(link: &str) -> Option<String> {
    canonical(link, false)
}

/// [`canonical_url`] keeping the fragment: for feeds whose items differ only by
/// it (`/2003/06/23.html#a100620`, `#a070643`).
pub fn canonical_url_with_fragment(link: &str) -> Option<String> {
    canonical(link, true)
}

fn canonical(link: &str, keep_fragment: bool) -> Option<String> {
    let mut url = Url::parse(link.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let mut host = url.host_str()?.to_ascii_lowercase();
    // `www.` and `m.` name the same site, down to a name that still has a dot.
    while let Some(rest) = host
        .strip_prefix("www.")
        .or_else(|| host.strip_prefix("m."))
    {
        if !rest.contains('.') {
            break;
        }
        host = rest.to_string();
    }
    url.set_host(Some(&host)).ok()?;
    url.set_scheme("https").ok()?;
    if matches!(url.port(), Some(80) | Some(443)) {
        url.set_port(None).ok()?;
    }
    let fragment = url
        .fragment()
        .filter(|f| keep_fragment && !f.is_empty())
        .map(str::to_string);
    url.set_fragment(None);
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !k.starts_with("utm_") && !TRACKING_PARAMS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.sort();
    if params.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(params);
    }
    let path = url.path().to_string();
    if path.len() > 1 && path.ends_with('/') {
        url.set_path(path.trim_end_matches('/'));
    }
    let mut s = url.to_string();
    if url.path() == "/" && url.query().is_none() {
        s.pop();
    }
    if let Some(f) = fragment {
        s.push('#');
        s.push_str(&f);
    }
    Some(s)
}
