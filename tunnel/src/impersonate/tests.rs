use std::collections::BTreeMap;

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn all(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
        .collect()
}

#[test]
fn stub_refuses_any_impersonation_header() {
    let refused = [
        vec![("Impersonate-User", "admin")],
        vec![("impersonate-user", "admin")],
        vec![("IMPERSONATE-GROUP", "system:masters")],
        vec![("Impersonate-Uid", "1")],
        vec![("Impersonate-Extra-Scopes", "x")],
        vec![("Accept", "*/*"), ("impersonate-extra-", "x")],
    ];
    for h in refused {
        let err = reject_client_impersonation(&headers(&h)).unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
    }
    let fine = [
        vec![],
        vec![
            ("Authorization", "Bearer x"),
            ("Accept", "application/json"),
        ],
        vec![("X-Impersonate-User", "x")],
        vec![("Impersonate", "x")],
    ];
    for h in fine {
        assert_eq!(reject_client_impersonation(&headers(&h)), Ok(()), "{h:?}");
    }
}

#[test]
fn agent_strips_every_client_credential_and_sets_its_own() {
    let mut h = headers(&[
        ("Authorization", "Bearer client-token"),
        ("authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy-Authorization", "Basic x"),
        ("impersonate-user", "admin"),
        ("Impersonate-User", "root"),
        ("IMPERSONATE-GROUP", "system:masters"),
        ("Impersonate-Group", "system:masters"),
        ("Impersonate-Uid", "0"),
        ("Impersonate-Extra-Scopes", "all"),
        ("impersonate-extra-acme.com%2Fproject", "p1"),
        ("Accept", "application/json"),
        ("Audit-ID", "abc"),
    ]);
    let id = Identity::new(
        "alice",
        Some("alice-uid".into()),
        vec!["dev".into(), "system:authenticated".into()],
        BTreeMap::from([
            (
                "scopes".to_owned(),
                vec!["view".to_owned(), "edit".to_owned()],
            ),
            ("acme.com/Project".to_owned(), vec!["p2".to_owned()]),
        ]),
    )
    .unwrap();
    rewrite_for_apiserver(&mut h, &id, "sa-token").unwrap();
    assert_eq!(all(&h, "authorization"), ["Bearer sa-token"]);
    assert!(h.get("proxy-authorization").is_none());
    assert_eq!(all(&h, "impersonate-user"), ["alice"]);
    assert_eq!(
        all(&h, "impersonate-group"),
        ["dev", "system:authenticated"]
    );
    assert_eq!(all(&h, "impersonate-uid"), ["alice-uid"]);
    assert_eq!(all(&h, "impersonate-extra-scopes"), ["view", "edit"]);
    assert_eq!(all(&h, "impersonate-extra-acme.com%2Fproject"), ["p2"]);
    // Untouched headers survive; no other impersonation header exists.
    assert_eq!(all(&h, "accept"), ["application/json"]);
    assert_eq!(all(&h, "audit-id"), ["abc"]);
    let imp: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(imp.len(), 5, "{imp:?}");
    assert!(h.get("authorization").unwrap().is_sensitive());
}

#[test]
fn minimal_identity_sets_only_user_and_token() {
    let mut h = headers(&[("Impersonate-Uid", "0")]);
    rewrite_for_apiserver(&mut h, &Identity::user("bob", vec![]).unwrap(), "t").unwrap();
    assert_eq!(all(&h, "impersonate-user"), ["bob"]);
    assert!(h.get("impersonate-uid").is_none());
    assert!(h.get("impersonate-group").is_none());
}

#[test]
fn control_characters_are_refused_even_if_an_identity_was_forged() {
    // Identity's fields are public: build bad ones directly, bypassing Identity::new.
    let base = Identity::user("alice", vec![]).unwrap();
    let forged = [
        Identity {
            user: "a\r\nImpersonate-Group: system:masters".into(),
            ..base.clone()
        },
        Identity {
            groups: vec!["dev\n".into()],
            ..base.clone()
        },
        Identity {
            uid: Some("u\0".into()),
            ..base.clone()
        },
        Identity {
            extra: BTreeMap::from([("k".into(), vec!["v\r".into()])]),
            ..base.clone()
        },
        Identity {
            extra: BTreeMap::from([("k\n".into(), vec!["v".into()])]),
            ..base.clone()
        },
    ];
    for id in forged {
        let mut h = headers(&[("Authorization", "Bearer client")]);
        assert!(rewrite_for_apiserver(&mut h, &id, "t").is_err(), "{id:?}");
        assert!(
            h.get("authorization").is_none(),
            "client credential left behind"
        );
    }
    let mut h = HeaderMap::new();
    assert!(rewrite_for_apiserver(&mut h, &base, "bad\ntoken").is_err());
}

#[test]
fn extra_keys_are_escaped_like_client_go() {
    let cases = [
        ("scopes", "scopes"),
        ("Scopes", "scopes"),
        ("acme.com/project", "acme.com%2Fproject"),
        ("a b", "a%20b"),
        ("100%", "100%25"),
        ("ü", "%C3%BC"),
    ];
    for (key, want) in cases {
        assert_eq!(escape_extra_key(key), want, "{key}");
    }
}
