//! The command line as an operator uses it: exit codes, messages, and that
//! nothing is half-applied.

use e2e::{repo, run, stderr, stdout};

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited")
}

// `validate -f examples/` is refused now (its sets reuse names): every
// example set is validated on its own in cli_input.rs,
// `validate_accepts_every_example_set`.

#[test]
fn validate_names_file_line_column_and_field_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("hs.yaml");
    let text = std::fs::read_to_string(repo().join("examples/lab/headnodeset.yaml")).unwrap();
    std::fs::write(
        &f,
        text.replace(
            "binder: [headnode0, headnode1, headnode2]",
            "binder: [headnode0, headnode1]",
        )
        .replace("primary: headnode0", "primry: headnode0"),
    )
    .unwrap();
    let o = run(d.path(), &["validate", "-f", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}:10:3: error: spec.primry: unknown field `primry`",
            f.display()
        )),
        "{err}"
    );
    // After fixing the typo, the quorum rule is reported with its own location.
    std::fs::write(
        &f,
        text.replace(
            "binder: [headnode0, headnode1, headnode2]",
            "binder: [headnode0, headnode1]",
        ),
    )
    .unwrap();
    let o = run(d.path(), &["validate", "-f", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(
            ":12:5: error: spec.haServices.binder: an HA set needs an odd number of at least 3"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn malformed_yaml_exits_1_with_a_location() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.yaml");
    std::fs::write(&f, "apiVersion: tritonctl/v1alpha1\nkind: [\n").unwrap();
    let o = run(d.path(), &["validate", "-f", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("malformed YAML"), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.yaml:"), "{}", stderr(&o));
}

#[test]
fn an_invalid_document_stores_nothing_even_beside_valid_ones() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("docs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        repo().join("examples/lab/headnodeset.yaml"),
        dir.join("a.yaml"),
    )
    .unwrap();
    let mv = std::fs::read_to_string(repo().join("examples/lab/manatee.yaml")).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        mv.replace("uuid: e5d4c3b2", "uuid: NOTAUUID"),
    )
    .unwrap();
    let store = d.path().join("store");
    let o = run(&store, &["apply", "-f", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was applied"));
    let o = run(&store, &["get", "hs", "lab"]);
    assert_eq!(
        code(&o),
        1,
        "the valid document was stored anyway: {}",
        stdout(&o)
    );
}

#[test]
fn apply_get_describe_delete_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), &["apply", "-f", "examples/lab/"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("manateeversion/sdc created (generation 1)"));
    let o = run(d.path(), &["apply", "-f", "examples/lab/"]);
    assert!(
        stdout(&o).contains("manateeversion/sdc unchanged (generation 1)"),
        "{}",
        stdout(&o)
    );

    let o = run(d.path(), &["get", "mv"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("NAME"), "{}", stdout(&o));
    assert!(stdout(&o).contains("sdc"));

    let o = run(d.path(), &["get", "manateeversion", "sdc", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metadata"]["generation"], 1);
    assert_eq!(
        v["spec"]["image"]["uuid"],
        "e5d4c3b2-a190-4f8e-9d7c-6b5a49382716"
    );

    let o = run(d.path(), &["describe", "hs", "lab"]);
    assert!(stdout(&o).contains("Kind:              HeadnodeSet"));
    assert!(stdout(&o).contains("the controller has not reconciled"));

    let o = run(d.path(), &["delete", "mv", "sdc"]);
    assert_eq!(code(&o), 0);
    assert_eq!(code(&run(d.path(), &["get", "mv", "sdc"])), 1);
    assert_eq!(code(&run(d.path(), &["delete", "mv", "sdc"])), 1);
}

#[test]
fn generation_moves_only_with_spec_and_stale_versions_conflict() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("mv.yaml");
    let text = std::fs::read_to_string(repo().join("examples/lab/manatee.yaml")).unwrap();
    std::fs::write(&f, &text).unwrap();
    let store = d.path().join("store");
    assert_eq!(code(&run(&store, &["apply", "-f", f.to_str().unwrap()])), 0);
    // A label is metadata, not spec: generation stays.
    std::fs::write(
        &f,
        text.replace("  name: sdc\n", "  name: sdc\n  labels: {team: ops}\n"),
    )
    .unwrap();
    let o = run(&store, &["apply", "-f", f.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("configured (generation 1)"),
        "{}",
        stdout(&o)
    );
    // A spec change bumps it.
    std::fs::write(
        &f,
        text.replace("maxReplicationLagSeconds: 5", "maxReplicationLagSeconds: 7"),
    )
    .unwrap();
    let o = run(&store, &["apply", "-f", f.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("configured (generation 2)"),
        "{}",
        stdout(&o)
    );
    // Applying on top of an old resourceVersion is refused and changes nothing.
    std::fs::write(
        &f,
        text.replace("  name: sdc\n", "  name: sdc\n  resourceVersion: \"0\"\n")
            .replace("maxReplicationLagSeconds: 5", "maxReplicationLagSeconds: 9"),
    )
    .unwrap();
    let o = run(&store, &["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("conflict on ManateeVersion/sdc"),
        "{}",
        stderr(&o)
    );
    let o = run(&store, &["get", "mv", "sdc", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["spec"]["health"]["maxReplicationLagSeconds"], 7);
}

#[test]
fn schema_prints_each_kind_and_rejects_unknown_kinds() {
    let d = tempfile::tempdir().unwrap();
    for kind in ["HeadnodeSet", "mv", "shardtopology"] {
        let o = run(d.path(), &["schema", kind]);
        assert_eq!(code(&o), 0);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["additionalProperties"], false);
    }
    let o = run(d.path(), &["schema", "Pod"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("unknown kind `Pod`"));
}

#[test]
fn every_command_has_help_with_an_example() {
    let d = tempfile::tempdir().unwrap();
    for cmd in ["validate", "apply", "get", "describe", "delete", "schema"] {
        let o = run(d.path(), &[cmd, "--help"]);
        assert_eq!(code(&o), 0);
        assert!(
            stdout(&o).contains("Example"),
            "`{cmd} --help` has no example:\n{}",
            stdout(&o)
        );
    }
}

#[test]
fn approve_option_answers_only_a_transplant_stopped_past_its_point_of_no_return() {
    let d = tempfile::tempdir().unwrap();
    let o = run(d.path(), &["apply", "-f", "examples/scenarios/transplant/"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Nothing is stopped: --option is refused and says what it is for.
    let o = run(d.path(), &["approve", "mv/sdc", "--option", "resume"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no transplant is stopped past its point of no return"),
        "{}",
        stderr(&o)
    );
    // Only the three options exist.
    let o = run(d.path(), &["approve", "mv/sdc", "--option", "rollback"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("restore-backup"), "{}", stderr(&o));
    let o = run(d.path(), &["approve", "--help"]);
    assert!(stdout(&o).contains("--option resume"), "{}", stdout(&o));
}
