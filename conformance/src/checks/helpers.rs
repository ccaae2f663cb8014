//! Helpers the checks share: expecting results and errors, kv calls, test data.

use super::*;

pub(super) fn show_response(r: &Response) -> String {
    show_bytes(&Message::Response(r.clone()).to_body(), 300)
}

pub(super) fn expect_result(r: &Response, what: &str) -> Result<Value, Failure> {
    match &r.outcome {
        Outcome::Result(raw) => serde_json::from_str(raw.get())
            .map_err(|e| Failure::new(format!("{what}: unreadable result: {e}")).got(show_response(r))),
        Outcome::Error(e) => Err(Failure::new(format!("{what} answered error {}: {}", e.code, e.message))
            .expected(format!("a result for {what}"))
            .got(show_response(r))),
    }
}

pub(super) fn expect_error(r: &Response, code: i64, what: &str, fix: &str) -> Result<ErrorObject, Failure> {
    let name = codes::name(code).unwrap_or("error");
    match &r.outcome {
        Outcome::Error(e) if e.code == code => Ok(e.clone()),
        Outcome::Error(e) => Err(Failure::new(format!("{what}: error {} instead of {code}", e.code))
            .expected(format!("error {code} ({name})"))
            .got(show_response(r))
            .fix(fix)),
        Outcome::Result(_) => Err(Failure::new(format!("{what}: a result instead of error {code}"))
            .expected(format!("error {code} ({name})"))
            .got(show_response(r))
            .fix(fix)),
    }
}

pub(super) fn expect_eq<T: PartialEq + std::fmt::Debug>(
    got: T,
    want: T,
    what: &str,
    fix: &str,
) -> Result<(), Failure> {
    if got == want {
        Ok(())
    } else {
        Err(Failure::new(format!("{what}: got {got:?}, expected {want:?}"))
            .expected(format!("{want:?}"))
            .got(format!("{got:?}"))
            .fix(fix))
    }
}

pub(super) fn recv_failure(s: &Session, what: &str, e: RecvError) -> Failure {
    Failure::from(s.explain(what, e))
}

pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(super) fn adder(handle: &str) -> Value {
    json!({"$handle": handle, "interface": "adder"})
}

pub(super) async fn ping(ctx: &Ctx, s: &mut Session, after: &str) -> Result<(), Failure> {
    let resp = s.call("tether/ping", json!({}), ctx.t()).await.map_err(|e| {
        Failure::new(format!("the session did not survive {after}: {e}"))
            .expected(format!("a tether/ping after {after} is answered"))
            .fix("keep the session going: answer the error and read the next frame")
    })?;
    expect_result(&resp, "tether/ping").map(|_| ())
}

pub(super) async fn kv_put(
    ctx: &Ctx,
    s: &mut Session,
    key: &str,
    value: &[u8],
    t: Duration,
) -> Result<(), Failure> {
    let resp = s.call("kv.put", json!({"key": key, "value": b64(value)}), t).await?;
    let _ = ctx;
    expect_result(&resp, "kv.put").map(|_| ())
}

pub(super) async fn kv_get(s: &mut Session, key: &str, t: Duration) -> Result<Response, Failure> {
    Ok(s.call("kv.get", json!({"key": key}), t).await?)
}

pub(super) async fn kv_get_value(s: &mut Session, key: &str, t: Duration) -> Result<Vec<u8>, Failure> {
    let resp = kv_get(s, key, t).await?;
    let v = expect_result(&resp, "kv.get")?;
    let text = v.get("value").and_then(Value::as_str).ok_or_else(|| {
        Failure::new("kv.get result has no string `value`")
            .expected("{\"value\": <base64>}")
            .got(show_response(&resp))
    })?;
    STANDARD.decode(text).map_err(|e| {
        Failure::new(format!("kv.get value is not padded standard base64: {e}"))
            .got(show_bytes(text.as_bytes(), 200))
            .fix("encode bytes as standard base64 with padding (§5.3)")
    })
}

pub(super) fn same_bytes(got: &[u8], want: &[u8], what: &str) -> Result<(), Failure> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    Err(Failure::new(format!("{what}: the value read back differs (at byte {at})"))
        .expected(format!("{} bytes: {}", want.len(), show_bytes(want, 64)))
        .got(format!("{} bytes: {}", got.len(), show_bytes(got, 64)))
        .fix("store and return the exact bytes of the value"))
}

/// Deterministic pseudo-random bytes.
pub(super) fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Fails naming the first of what `pick` found in every scenario's observations.
pub(super) fn aggregate(
    all: &[Observations],
    pick: fn(&Observations) -> &Vec<String>,
    summary: &str,
    expected: &str,
    fix: &str,
) -> Verdict {
    let bad: Vec<&String> = all.iter().flat_map(pick).collect();
    if bad.is_empty() {
        return Verdict::Pass;
    }
    Verdict::Fail(Box::new(
        Failure::new(format!("{} ({} in all): {}", summary, bad.len(), bad[0]))
            .expected(expected)
            .got(bad.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("\n"))
            .fix(fix),
    ))
}
