//! The `kv` reference interface (§9.1, §9.2).

use super::*;

async fn kv_put_get(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "hello", b"world", ctx.t()).await?;
        let got = kv_get_value(&mut s, "hello", ctx.t()).await?;
        same_bytes(&got, b"world", "kv.get hello")
    })
}

async fn kv_overwrite(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "k", b"first", ctx.t()).await?;
        kv_put(&ctx, &mut s, "k", b"second value", ctx.t()).await?;
        let got = kv_get_value(&mut s, "k", ctx.t()).await?;
        same_bytes(&got, b"second value", "kv.get after an overwrite")
    })
}

async fn kv_missing(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let resp = kv_get(&mut s, "never-put", ctx.t()).await?;
        let e = expect_error(
            &resp,
            codes::KEY_NOT_FOUND,
            "kv.get of a missing key",
            "answer error 1001 (key not found) with data {\"key\": <key>} (§9.1)",
        )?;
        let key = e.data.as_ref().and_then(|d| d.get("key")).and_then(Value::as_str);
        expect_eq(
            key,
            Some("never-put"),
            "data.key of error 1001",
            "put the missing key in data: {\"key\": <key>} (§9.1)",
        )
    })
}

async fn kv_empty(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "empty", b"", ctx.t()).await?;
        let got = kv_get_value(&mut s, "empty", ctx.t()).await?;
        same_bytes(&got, b"", "kv.get of an empty value")
    })
}

async fn kv_binary(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        kv_put(&ctx, &mut s, "bytes", &all, ctx.t()).await?;
        let got = kv_get_value(&mut s, "bytes", ctx.t()).await?;
        same_bytes(&got, &all, "kv.get of all byte values")
    })
}

async fn kv_unicode(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let keys = ["ключ", "🔑 emoji key", "鍵", "nul\u{0}inside", "e\u{301}", "\u{e9}", " "];
        for (i, key) in keys.iter().enumerate() {
            kv_put(&ctx, &mut s, key, format!("value {i}").as_bytes(), ctx.t()).await?;
        }
        for (i, key) in keys.iter().enumerate() {
            let got = kv_get_value(&mut s, key, ctx.t()).await?;
            same_bytes(&got, format!("value {i}").as_bytes(), &format!("kv.get {key:?}")).map_err(|f| {
                f.fix("compare keys as exact Unicode strings, without normalisation or truncation")
            })?;
        }
        Ok(())
    })
}

async fn kv_bad_base64(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        // A line break or a space inside: common decoders skip them; §5.3 forbids them.
        for value in ["not base64!", "aGk", "aGk=\n", "a-_b", "aGVs\nbG8=", "aGVs bG8="] {
            let resp = s.call("kv.put", json!({"key": "b", "value": value}), ctx.t()).await?;
            expect_error(
                &resp,
                codes::INVALID_PARAMS,
                &format!("kv.put with value {value:?}"),
                "reject strings that are not padded standard base64 with -32602 (§5.3)",
            )?;
        }
        Ok(())
    })
}

async fn kv_large(ctx: Arc<Ctx>, len: usize) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        let t = ctx.t().max(Duration::from_secs(60));
        let value = pattern(len);
        kv_put(&ctx, &mut s, "large", &value, t).await?;
        let got = kv_get_value(&mut s, "large", t).await?;
        same_bytes(&got, &value, &format!("kv.get of a {len}-byte value"))
    })
}

async fn kv_large_1(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_large(ctx, 1 << 20).await
}

async fn kv_large_16(ctx: Arc<Ctx>) -> ScenarioOut {
    kv_large(ctx, 16 << 20).await
}

async fn kv_delete(ctx: Arc<Ctx>) -> ScenarioOut {
    scenario!(ctx, LogLevel::Info, |s| {
        kv_put(&ctx, &mut s, "d", b"x", ctx.t()).await?;
        let fix = "answer kv.delete with {\"existed\": <whether the key held a value>} (§9.2)";
        let resp = s.call("kv.delete", json!({"key": "d"}), ctx.t()).await?;
        expect_eq(
            expect_result(&resp, "kv.delete")?,
            json!({"existed": true}),
            "kv.delete of a present key",
            fix,
        )?;
        let resp = kv_get(&mut s, "d", ctx.t()).await?;
        expect_error(
            &resp,
            codes::KEY_NOT_FOUND,
            "kv.get after kv.delete",
            "a deleted key is missing: 1001 (§9.1)",
        )?;
        let resp = s.call("kv.delete", json!({"key": "d"}), ctx.t()).await?;
        expect_eq(
            expect_result(&resp, "kv.delete")?,
            json!({"existed": false}),
            "kv.delete of a missing key",
            fix,
        )
    })
}

/// The checks of this section, in report order.
pub(super) fn checks() -> Vec<Check> {
    vec![
        Check {
            id: "kv.put-get",
            section: "§9.1",
            title: "put then get returns the value",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_put_get),
        },
        Check {
            id: "kv.overwrite",
            section: "§9.1",
            title: "a second put replaces the value",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_overwrite),
        },
        Check {
            id: "kv.missing-key",
            section: "§9.1",
            title: "get of a missing key: 1001 with data.key",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_missing),
        },
        Check {
            id: "kv.empty-value",
            section: "§9.1",
            title: "an empty value round-trips",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_empty),
        },
        Check {
            id: "kv.binary-value",
            section: "§9.1 §5.3",
            title: "a value holding all 256 byte values round-trips",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_binary),
        },
        Check {
            id: "kv.unicode-key",
            section: "§9.1",
            title: "Unicode keys (Cyrillic, emoji, CJK, NUL) are distinct and exact",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_unicode),
        },
        Check {
            id: "kv.bad-base64",
            section: "§5.3",
            title: "a value that is not padded base64: -32602",
            needs: Needs::Kv,
            tier: Tier::Hardening,
            kind: s!(kv_bad_base64),
        },
        Check {
            id: "kv.large-1mib",
            section: "§9.1",
            title: "a 1 MiB value round-trips",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_large_1),
        },
        Check {
            id: "kv.large-16mib",
            section: "§9.1 §2.5",
            title: "a 16 MiB value round-trips",
            needs: Needs::Kv,
            tier: Tier::Core,
            kind: s!(kv_large_16),
        },
        Check {
            id: "kv.delete",
            section: "§9.2",
            title: "delete on v2: existed true, then get 1001, then existed false",
            needs: Needs::KvV2,
            tier: Tier::Core,
            kind: s!(kv_delete),
        },
    ]
}
