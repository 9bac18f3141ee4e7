//! Placing secrets in an HTTP/1.x request head bound for a host that has them. A secret goes
//! only where its service takes it: the whole value of the service's own header
//! (`<placeholder>`, `Bearer <placeholder>` or `token <placeholder>`), `authorization: Bearer
//! <placeholder>` for a service that accepts it, and a query parameter (`key=<placeholder>`)
//! for a service that names one. A placeholder of the host's secrets anywhere else refuses the
//! head, so no header or query the service might echo back (Host, Origin, Referer, custom
//! headers, the path) ever carries the value. Any `Accept-Encoding` becomes `identity`, so that
//! responses can be scanned for an echoed secret. Everything else is kept byte for byte.

use super::credentials::{find, Credential};
use super::leak::{PlaceholderLeak, PlaceholderPlace};
use super::service::PLACEHOLDER_PREFIX;

/// The header every rewritten head carries instead of the guest's `Accept-Encoding`.
const IDENTITY_ENCODING: &[u8] = b"accept-encoding: identity";

/// What became of a header line.
#[derive(Clone, Copy)]
enum HeaderLine<'a> {
    /// Copied as it was.
    Kept,
    /// Left out (the guest's `Accept-Encoding`).
    Dropped,
    /// Copied with this credential's value in place of its placeholder.
    Placed(&'a Credential),
}

/// Returns `head` with the secrets of `own` (the credentials of the head's host) in their
/// places, `Accept-Encoding: identity` instead of the guest's, and every other byte as it was;
/// or the first misplaced placeholder of `own`.
pub(crate) fn place_secrets(head: &[u8], own: &[&Credential]) -> Result<Vec<u8>, PlaceholderLeak> {
    let mut out = Vec::with_capacity(head.len() + 256);
    let mut lines = head.split_inclusive(|&byte| byte == b'\n');
    let mut consumed = 0;
    if let Some(request_line) = lines.next() {
        consumed += request_line.len();
        place_in_request_line(request_line, own, &mut out)?;
    }
    let mut previous = HeaderLine::Kept;
    for line in lines {
        consumed += line.len();
        let content = trim_line_end(line);
        if content.is_empty() {
            // The empty line is its own line ending: it ends the added header, then the head.
            out.extend_from_slice(IDENTITY_ENCODING);
            out.extend_from_slice(line);
            out.extend_from_slice(line);
            break;
        }
        if content.starts_with(b" ") || content.starts_with(b"\t") {
            // An obsolete folded continuation of the previous header.
            if let Some((_, credential)) = first_placeholder(line, own) {
                return Err(misplaced(credential, PlaceholderPlace::ContinuationLine));
            }
            match previous {
                HeaderLine::Placed(credential) => {
                    return Err(misplaced(credential, PlaceholderPlace::ContinuationLine))
                }
                HeaderLine::Dropped => {}
                HeaderLine::Kept => out.extend_from_slice(line),
            }
            continue;
        }
        previous = place_in_header_line(line, own, &mut out)?;
    }
    out.extend_from_slice(head.get(consumed..).unwrap_or_default());
    Ok(out)
}

/// Copies the request line; a placeholder may only be a whole query parameter's value.
fn place_in_request_line(
    line: &[u8],
    own: &[&Credential],
    out: &mut Vec<u8>,
) -> Result<(), PlaceholderLeak> {
    let Some((_, found)) = first_placeholder(line, own) else {
        out.extend_from_slice(line);
        return Ok(());
    };
    let parts = query_range(trim_line_end(line)).and_then(|(start, end)| {
        Some((line.get(..start)?, line.get(start..end)?, line.get(end..)?))
    });
    let Some((before, query, after)) = parts else {
        return Err(misplaced(found, PlaceholderPlace::RequestLine));
    };
    for outside in [before, after] {
        if let Some((_, credential)) = first_placeholder(outside, own) {
            return Err(misplaced(credential, PlaceholderPlace::RequestLine));
        }
    }
    out.extend_from_slice(before);
    for (index, parameter) in query.split(|&byte| byte == b'&').enumerate() {
        if index > 0 {
            out.push(b'&');
        }
        place_in_query_parameter(parameter, own, out)?;
    }
    out.extend_from_slice(after);
    Ok(())
}

/// Copies one `name=value` query parameter, with the secret percent-encoded in place of a
/// placeholder that is the whole value of the parameter its service names.
fn place_in_query_parameter(
    parameter: &[u8],
    own: &[&Credential],
    out: &mut Vec<u8>,
) -> Result<(), PlaceholderLeak> {
    let Some((_, found)) = first_placeholder(parameter, own) else {
        out.extend_from_slice(parameter);
        return Ok(());
    };
    let slot = own.iter().find_map(|credential| {
        let name = credential.query_parameter?;
        let value = parameter
            .strip_prefix(name.as_bytes())?
            .strip_prefix(b"=")?;
        (value == credential.placeholder.as_bytes()).then_some((name, *credential))
    });
    let Some((name, credential)) = slot else {
        return Err(misplaced(found, PlaceholderPlace::RequestLine));
    };
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    write_percent_encoded(credential.value.expose(), out);
    Ok(())
}

/// The byte range of the query in a request line (without its line end): after the target's
/// `?`, up to its `#` or its end.
fn query_range(content: &[u8]) -> Option<(usize, usize)> {
    let first_space = content.iter().position(|&byte| byte == b' ')?;
    let last_space = content.iter().rposition(|&byte| byte == b' ')?;
    let target = content.get(first_space + 1..last_space)?;
    let question = target.iter().position(|&byte| byte == b'?')?;
    let start = first_space + 1 + question + 1;
    let end = content
        .get(start..last_space)
        .and_then(|query| query.iter().position(|&byte| byte == b'#'))
        .map_or(last_space, |hash| start + hash);
    Some((start, end))
}

/// Copies one header line: the guest's `Accept-Encoding` is left out, a placeholder in the
/// value is replaced when it is in its secret's slot, and refused anywhere else.
fn place_in_header_line<'a>(
    line: &[u8],
    own: &[&'a Credential],
    out: &mut Vec<u8>,
) -> Result<HeaderLine<'a>, PlaceholderLeak> {
    let content = trim_line_end(line);
    let Some(colon) = content.iter().position(|&byte| byte == b':') else {
        if let Some((_, credential)) = first_placeholder(line, own) {
            return Err(misplaced(credential, PlaceholderPlace::HeaderName));
        }
        out.extend_from_slice(line);
        return Ok(HeaderLine::Kept);
    };
    let (name, value) = content.split_at(colon);
    let value = value.get(1..).unwrap_or_default();
    if let Some((_, credential)) = first_placeholder(name, own) {
        return Err(misplaced(credential, PlaceholderPlace::HeaderName));
    }
    let found = first_placeholder(value, own);
    if name.eq_ignore_ascii_case(b"accept-encoding") {
        return match found {
            Some((_, credential)) => {
                Err(misplaced(credential, PlaceholderPlace::header_value(name)))
            }
            None => Ok(HeaderLine::Dropped),
        };
    }
    let Some((_, found)) = found else {
        out.extend_from_slice(line);
        return Ok(HeaderLine::Kept);
    };
    let Some((offset, credential)) = secret_slot(name, value, own) else {
        return Err(misplaced(found, PlaceholderPlace::header_value(name)));
    };
    let at = colon + 1 + offset;
    let (Some(before), Some(after)) = (
        line.get(..at),
        line.get(at + credential.placeholder.len()..),
    ) else {
        return Err(misplaced(found, PlaceholderPlace::header_value(name)));
    };
    out.extend_from_slice(before);
    out.extend_from_slice(credential.value.expose().as_bytes());
    out.extend_from_slice(after);
    Ok(HeaderLine::Placed(credential))
}

/// Where in the value of header `name` (the bytes after its colon) a secret of `own` goes, and
/// whose: the value without surrounding whitespace is exactly `<placeholder>`, or `Bearer` or
/// `token` (any case), spaces, `<placeholder>`; and the header is the service's own, or
/// `authorization` with `Bearer` for a service that accepts it.
fn secret_slot<'a>(
    name: &[u8],
    value: &[u8],
    own: &[&'a Credential],
) -> Option<(usize, &'a Credential)> {
    let leading = value.iter().take_while(|&&byte| is_ows(byte)).count();
    let trailing = value.iter().rev().take_while(|&&byte| is_ows(byte)).count();
    let trimmed = value.get(leading..value.len().saturating_sub(trailing))?;
    let (scheme, token_offset) = match trimmed.iter().position(|&byte| is_ows(byte)) {
        None => (None, 0),
        Some(space) => {
            let gap = trimmed
                .get(space..)?
                .iter()
                .take_while(|&&byte| byte == b' ')
                .count();
            (Some(trimmed.get(..space)?), space + gap)
        }
    };
    let token = trimmed.get(token_offset..)?;
    let credential = *own
        .iter()
        .find(|credential| credential.placeholder.as_bytes() == token)?;
    let bearer = scheme.is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer"));
    let scheme_ok = scheme.is_none_or(|scheme| bearer || scheme.eq_ignore_ascii_case(b"token"));
    let header_ok = name.eq_ignore_ascii_case(credential.header.as_bytes())
        || (credential.bearer_authorization
            && bearer
            && name.eq_ignore_ascii_case(b"authorization"));
    (scheme_ok && header_ok).then_some((leading + token_offset, credential))
}

/// The first placeholder of `own` in `bytes` (the longest at a position, so a placeholder that
/// extends another is matched whole): where it starts, and whose it is.
fn first_placeholder<'a>(bytes: &[u8], own: &[&'a Credential]) -> Option<(usize, &'a Credential)> {
    let mut offset = 0;
    while let Some(rest) = bytes.get(offset..) {
        let start = offset + find(rest, PLACEHOLDER_PREFIX.as_bytes())?;
        let candidate = bytes.get(start..).unwrap_or_default();
        let longest = own
            .iter()
            .filter(|credential| candidate.starts_with(credential.placeholder.as_bytes()))
            .max_by_key(|credential| credential.placeholder.len());
        match longest {
            Some(credential) => return Some((start, *credential)),
            None => offset = start + PLACEHOLDER_PREFIX.len(),
        }
    }
    None
}

fn misplaced(credential: &Credential, place: PlaceholderPlace) -> PlaceholderLeak {
    PlaceholderLeak::Misplaced {
        service: credential.service_name.clone(),
        place,
    }
}

/// Writes `value` percent-encoded except RFC 3986 unreserved characters (for a URI query).
fn write_percent_encoded(value: &str, out: &mut Vec<u8>) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
}

/// Optional whitespace (RFC 9110): space or tab.
fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// A line without its `\n` or `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
