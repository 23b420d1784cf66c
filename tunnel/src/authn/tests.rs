use std::time::Duration;

use http::HeaderValue;

use super::*;
use crate::pki::{Ca, parse_cert_pem};
use crate::state::StateDir;
use crate::users::{NewUser, UserStore, add_user, parse_token_file, remove_user};

fn new_user(name: &str, groups: &[&str]) -> NewUser {
    NewUser {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        clusters: vec!["*".into()],
        read_only: false,
        ttl: Duration::from_secs(3600),
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    parse_cert_pem(pem).unwrap().remove(0)
}

fn auth(v: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for a in v {
        h.append(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
    }
    h
}

#[test]
fn certificates_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let ca = Ca::load_or_create(dir.path()).unwrap();
    let alice = add_user(&state, &ca, &new_user("alice", &["dev"]), &[]).unwrap();
    let bob = add_user(&state, &ca, &new_user("bob", &[]), &[]).unwrap();
    remove_user(&state, "bob").unwrap();
    let alice_cert = der(&alice.cert.cert_pem);
    let bob_cert = der(&bob.cert.cert_pem);
    // Issued by the CA but never recorded: a stolen CA key, or a test harness.
    let stray_alice = der(&ca
        .issue_user("alice", &["system:masters".into()], Duration::from_secs(60))
        .unwrap()
        .cert_pem);
    let mallory = der(&ca
        .issue_user("mallory", &[], Duration::from_secs(60))
        .unwrap()
        .cert_pem);
    let agent = der(&ca
        .issue_agent(
            &causeway_model::ClusterId::new("idc-bj").unwrap(),
            Duration::from_secs(60),
        )
        .unwrap()
        .cert_pem);
    let tokens = parse_token_file(
        "0123456789abcdef-carol,carol,c1,\"ops\"\n",
        std::path::Path::new("t.csv"),
    )
    .unwrap();
    let base = UserStore::load(dir.path(), None).unwrap();
    let store = UserStore::from_parts(
        crate::users::list_users(&state).unwrap(),
        vec![crate::users::RevokedCert {
            serial: bob.cert.serial.clone(),
            user: "bob".into(),
            revoked_at: String::new(),
        }],
        tokens,
        std::path::Path::new("users.yaml"),
    )
    .unwrap();
    assert!(base.is_revoked(&bob.cert.serial));

    type Want = Result<(&'static str, Vec<&'static str>), &'static str>;
    let cases: Vec<(&str, Option<&CertificateDer>, HeaderMap, Want)> = vec![
        (
            "alice's cert",
            Some(&alice_cert),
            auth(&[]),
            Ok(("alice", vec!["dev", AUTHENTICATED_GROUP])),
        ),
        (
            "cert wins over a bad token",
            Some(&alice_cert),
            auth(&["Bearer nope-nope-nope-nope"]),
            Ok(("alice", vec!["dev", AUTHENTICATED_GROUP])),
        ),
        (
            "removed user's cert",
            Some(&bob_cert),
            auth(&[]),
            Err("Revoked"),
        ),
        (
            "cert never recorded",
            Some(&stray_alice),
            auth(&[]),
            Err("UnknownCert"),
        ),
        (
            "unknown user",
            Some(&mallory),
            auth(&[]),
            Err("UnknownUser"),
        ),
        (
            "agent cert on the user listener",
            Some(&agent),
            auth(&[]),
            Err("NotUserCert"),
        ),
        ("nothing", None, auth(&[]), Err("NoCredentials")),
        (
            "good token",
            None,
            auth(&["Bearer 0123456789abcdef-carol"]),
            Ok(("carol", vec!["ops", AUTHENTICATED_GROUP])),
        ),
        (
            "scheme is case-insensitive",
            None,
            auth(&["bearer 0123456789abcdef-carol"]),
            Ok(("carol", vec!["ops", AUTHENTICATED_GROUP])),
        ),
        (
            "wrong token",
            None,
            auth(&["Bearer 0123456789abcdef-carox"]),
            Err("InvalidToken"),
        ),
        (
            "basic auth",
            None,
            auth(&["Basic YTpi"]),
            Err("MalformedAuthorization"),
        ),
        (
            "empty bearer",
            None,
            auth(&["Bearer "]),
            Err("MalformedAuthorization"),
        ),
        (
            "no scheme",
            None,
            auth(&["0123456789abcdef-carol"]),
            Err("MalformedAuthorization"),
        ),
        (
            "two headers",
            None,
            auth(&["Bearer 0123456789abcdef-carol", "Bearer x"]),
            Err("MalformedAuthorization"),
        ),
        (
            "token with a space",
            None,
            auth(&["Bearer 0123456789abcdef-carol x"]),
            Err("MalformedAuthorization"),
        ),
    ];
    for (what, cert, headers, want) in cases {
        let got = authenticate(cert, &headers, &store);
        match (got, want) {
            (Ok(id), Ok((user, groups))) => {
                assert_eq!(id.user, user, "{what}");
                assert_eq!(id.groups, groups, "{what}");
            }
            (Err(e), Err(reason)) => assert_eq!(e.reason(), reason, "{what}: {e}"),
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn non_utf8_authorization_is_malformed() {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
    );
    let err = authenticate(None, &h, &UserStore::default()).unwrap_err();
    assert_eq!(err, AuthnError::MalformedAuthorization);
}
