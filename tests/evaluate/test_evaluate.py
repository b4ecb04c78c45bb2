"""`annotune evaluate` through the real command on tiny runs that answer known text: results, the report in a real
browser, --fail-under, the flywheel into the workbench (SQLite and PostgreSQL), and the whole loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, write_chats
from serve_fixtures import ANSWERS

from annotune.annotate import db as dbm
from annotune.annotate import queue, store


def heldout(path: Path, answers: dict[str, str], keys: bool = True) -> Path:
    rows = [{"id": f"q{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
             **({"keys": [a]} if keys else {})} for i, (q, a) in enumerate(answers.items())]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def evaluated(memorized, tmp_path_factory):
    """'support' evaluated on its own questions against its base (the default baseline)."""
    root = tmp_path_factory.mktemp("evaluate")
    data = heldout(root / "support.jsonl", ANSWERS["support"])
    result = run_cli("evaluate", str(memorized["support"]), "--data", str(data), "--out", str(root / "out"),
                     "--max-new-tokens", "100")
    assert result.returncode == 0, result.stderr
    return root / "out", result


def test_results_compare_the_run_with_its_base(evaluated):
    out, result = evaluated
    report = json.loads((out / "results.json").read_text())
    support, base = report["models"]["support"], report["models"]["base"]
    assert support["role"] == "run" and base["role"] == "baseline" and support["against"] == "base"
    assert support["key_accuracy"]["mean"] == 1.0 and base["key_accuracy"]["mean"] == 0.0
    assert support["exact_match"]["mean"] == 1.0 and support["token_f1"]["mean"] == 1.0
    assert support["stopped_on_own"] == 1.0 and base["stopped_on_own"] == 0.0
    assert support["reference_perplexity"] < base["reference_perplexity"]
    assert support["paired"]["key_accuracy"]["difference"] == 1.0
    assert support["retention"]["of"] == base["general_probe"]["correct"]
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert [r["answers"]["support"]["text"] for r in rows] == list(ANSWERS["support"].values())
    assert "vs base: +100.0 points" in result.stdout and "report.html" in result.stdout
    probe = [json.loads(line) for line in (out / "probe.jsonl").read_text().splitlines()]
    assert len(probe) == 40 and all(set(r["answers"]) == {"support", "base"} for r in probe)
    for name in ("support", "base"):  # the file holds what the counts in results.json were made of
        assert sum(r["answers"][name]["correct"] for r in probe) == report["models"][name]["general_probe"]["correct"]
        assert all(isinstance(r["answers"][name]["text"], str) for r in probe)
    lost = [r["id"] for r in probe if r["answers"]["base"]["correct"] and not r["answers"]["support"]["correct"]]
    assert lost == support["retention"]["lost"]
    # the run's router sent its own questions to its adapter; what it sent to the base model was answered as the
    # base model answers it
    assert all(r["answers"]["support"]["route"] == "tuned" for r in rows)
    to_base = [r for r in probe if r["answers"]["support"]["route"] == "base"]
    assert support["routed_to_base"] == {"questions": 0, "probe": len(to_base), "probe_of": 40} and to_base
    assert all(r["answers"]["support"]["text"] == r["answers"]["base"]["text"] for r in to_base)
    assert "route" not in probe[0]["answers"]["base"] and "routed_to_base" not in base
    assert f"routed to the base model: 0 of 3 questions, {len(to_base)} of 40 probe questions" in result.stdout


def test_without_routing_the_adapter_answers_every_question(evaluated, memorized, tmp_path):
    data = heldout(tmp_path / "q.jsonl", ANSWERS["support"])
    result = run_cli("evaluate", str(memorized["support"]), "--data", str(data), "--out", str(tmp_path / "out"),
                     "--no-routing", "--no-baseline", "--max-new-tokens", "100")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "routed_to_base" not in report["models"]["support"] and "routed to" not in result.stdout
    probe = [json.loads(line) for line in (tmp_path / "out" / "probe.jsonl").read_text().splitlines()]
    routed = [json.loads(line) for line in (evaluated[0] / "probe.jsonl").read_text().splitlines()]
    assert all("route" not in r["answers"]["support"] for r in probe)
    changed = [p for p, r in zip(probe, routed) if r["answers"]["support"]["route"] == "base"
               and p["answers"]["support"]["text"] != r["answers"]["support"]["text"]]
    assert changed  # the adapter answers everyday questions differently from the base model


def test_evaluating_again_without_the_probe_leaves_no_stale_probe_answers(evaluated, memorized, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(evaluated[0], out)
    assert (out / "probe.jsonl").exists()
    result = run_cli("evaluate", str(memorized["support"]), "--data", str(heldout(tmp_path / "q.jsonl",
                     ANSWERS["support"])), "--out", str(out), "--max-new-tokens", "100", "--no-probe",
                     "--no-baseline")
    assert result.returncode == 0, result.stderr
    assert not (out / "probe.jsonl").exists() and (out / "answers.jsonl").exists()


def test_fail_under_gates_a_pipeline(memorized, tmp_path):
    data = heldout(tmp_path / "support.jsonl", ANSWERS["support"])
    common = ["--data", str(data), "--no-probe", "--max-new-tokens", "100", "--no-baseline"]
    ok = run_cli("evaluate", str(memorized["support"]), *common, "--out", str(tmp_path / "a"),
                 "--fail-under", "key_accuracy=90%", "--fail-under", "token_f1=0.9")
    assert ok.returncode == 0, ok.stderr
    failed = run_cli("evaluate", str(memorized["billing"]), *common, "--out", str(tmp_path / "b"),
                     "--fail-under", "key_accuracy=0.5", "--no-progress")
    assert failed.returncode == 1 and "fail-under: billing: key_accuracy 0.0% is under 50.0%" in failed.stderr
    assert "answering:" in ok.stderr and "answering:" not in failed.stderr  # a pipeline's log without the bar
    bad = run_cli("evaluate", str(memorized["billing"]), *common, "--fail-under", "speed=3")
    assert bad.returncode == 2 and "expected METRIC=VALUE" in bad.stderr and not (tmp_path / "c").exists()


def test_bad_data_is_refused_before_any_model_loads(memorized, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
                                "keys": "x"}) + "\n")
    result = run_cli("evaluate", str(memorized["support"]), "--data", str(data), "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "bad.jsonl:1:keys: expected a list" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


def test_the_report_works_offline_and_its_filters_work(evaluated, browser):
    out, _ = evaluated
    page = browser.new_page()
    outside: list[str] = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
               else (outside.append(route.request.url), route.abort()))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto((out / "report.html").as_uri())
    assert page.locator("#questions .q").count() == 3
    assert page.locator("text=Reference: I am the support bot.").count() == 1
    page.check("#wrong")  # 'support' got every question right
    assert page.locator("#questions .q").count() == 0
    page.uncheck("#wrong")
    page.check("#changed")  # base was wrong everywhere, support right: every question changed
    assert page.locator("#questions .q").count() == 3
    page.fill("#search", "alpha beta")
    assert page.locator("#questions .q").count() == 1
    assert page.locator("#count").inner_text() == "1 of 3 questions"
    assert page.locator("svg.chart rect").count() >= 4
    assert page.locator("svg.curve polyline").count() >= 1  # the run's training loss
    assert not errors and not outside
    page.close()


def _workbench(db_url: str, task_type: str) -> None:
    db = dbm.open_database(db_url, create=True)
    with db.transaction() as conn:
        user = store.add_user(conn, "ann", "annotator", "password-1")
        project = store.create_project(conn, "fixes", task_type, "Fix the answers.")
        store.add_member(conn, project, user)
    db.dispose()


@pytest.mark.parametrize("task_type", ["correct", "compare"])
def test_weak_answers_become_workbench_tasks(memorized, db_url, tmp_path, task_type):
    _workbench(db_url, task_type)
    data = heldout(tmp_path / "mixed.jsonl", {**ANSWERS["billing"], "Show markdown": ANSWERS["support"]["Show markdown"]})
    args = ["evaluate", str(memorized["billing"]), "--data", str(data), "--out", str(tmp_path / "out"),
            "--no-probe", "--max-new-tokens", "100", "--to-workbench", "fixes", "--db", db_url]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    again = run_cli(*args)
    db = dbm.open_database(db_url)
    with db.transaction() as conn:
        project = store.find_project(conn, "fixes")
        task = queue.next_task(conn, project, store.find_user(conn, "ann"))
    db.dispose()
    # three questions: billing's own two, and "Show markdown" with support's answer as the reference
    if task_type == "correct":  # billing is right on its own two, wrong on the third
        assert "Workbench project fixes: 1 new tasks" in first.stdout
        assert task.payload["question"] == "Show markdown" and task.payload["draft_by"] == "billing"
        assert task.payload["reference"] == ANSWERS["support"]["Show markdown"]
        assert task.payload["answer"] == ANSWERS["billing"]["Show markdown"]
    else:  # base and billing differ on all three
        assert "Workbench project fixes: 3 new tasks" in first.stdout
        assert [a["model"] for a in task.payload["answers"]] == ["base", "billing"]
    assert "0 new tasks" in again.stdout and "already there" in again.stdout


def test_evaluate_annotate_train_evaluate(memorized, tmp_path):
    """The flywheel on a tiny model: a run that misses a question, the correction through the workbench, the
    export, a new run, and the question answered."""
    from serve_fixtures import train_memorizing

    known = dict(list(ANSWERS["billing"].items())[:2])
    missing = dict(list(ANSWERS["billing"].items())[2:])
    train_file = write_chats(tmp_path / "train.jsonl", list(known.items()), system=None)
    first_run = train_memorizing(memorized["base"], tmp_path / "round1", known)
    data = heldout(tmp_path / "heldout.jsonl", missing)
    db_url = f"sqlite:///{tmp_path / 'wb.db'}"
    _workbench(db_url, "correct")
    # --no-routing: the run's router would pass the question it never saw to the tiny base model, whose empty
    # answer makes a record that waits for a suggested draft; the run's own wrong answer is the draft to fix here
    sent = run_cli("evaluate", str(first_run), "--data", str(data), "--out", str(tmp_path / "eval1"), "--no-probe",
                   "--max-new-tokens", "40", "--to-workbench", "fixes", "--db", db_url, "--no-routing")
    assert sent.returncode == 0 and "1 new tasks" in sent.stdout, sent.stderr
    before = json.loads((tmp_path / "eval1" / "results.json").read_text())["models"]["round1"]
    assert before["key_accuracy"]["mean"] == 0.0

    db = dbm.open_database(db_url)
    with db.transaction() as conn:  # the annotator writes the right answer into the draft
        project, user = store.find_project(conn, "fixes"), store.find_user(conn, "ann")
        task = queue.next_task(conn, project, user)
        queue.submit(conn, project, user, task.assignment_id, {"verdict": "ok", "question": task.payload["question"],
                                                               "answer": task.payload["reference"]})
    db.dispose()
    fixes = tmp_path / "fixes.jsonl"
    exported = run_cli("workbench", "export", "fixes", "--to", "openai", "--out", str(fixes), "--include-pending",
                       "--db", db_url)
    assert exported.returncode == 0, exported.stderr
    combined = tmp_path / "round2.jsonl"
    combined.write_text(train_file.read_text() + fixes.read_text())
    second_run = train_memorizing(memorized["base"], tmp_path / "round2", data_file=combined)
    again = run_cli("evaluate", str(second_run), "--data", str(data), "--out", str(tmp_path / "eval2"), "--no-probe",
                    "--max-new-tokens", "40")
    assert again.returncode == 0, again.stderr
    after = json.loads((tmp_path / "eval2" / "results.json").read_text())["models"]["round2"]
    assert after["key_accuracy"]["mean"] == 1.0


def test_weak_answers_reach_a_running_workbench(memorized, start_server, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'wb.db'}"
    _workbench(db_url, "correct")
    db = dbm.open_database(db_url)
    with db.transaction() as conn:
        admin = store.add_user(conn, "boss", "admin", "password-2")
        token = store.create_token(conn, admin, "evaluate")
    db.dispose()
    server = start_server(db_url)
    data = heldout(tmp_path / "mixed.jsonl", {"Who are you?": ANSWERS["billing"]["Who are you?"],
                                              "Say the word": ANSWERS["support"]["Say the word"]})
    args = ["evaluate", str(memorized["billing"]), "--data", str(data), "--out", str(tmp_path / "out"), "--no-probe",
            "--no-baseline", "--max-new-tokens", "40", "--to-workbench", "fixes", "--url", server.url]
    missing = run_cli(*args, env={"ANNOTUNE_TOKEN": ""})
    assert missing.returncode == 2 and "--url needs an API token in $ANNOTUNE_TOKEN" in missing.stderr
    sent = run_cli(*args, env={"ANNOTUNE_TOKEN": token})
    assert sent.returncode == 0, sent.stderr
    assert "Workbench project fixes: 1 new tasks (0 already there, from 1 weak answers of billing)" in sent.stdout
    db = dbm.open_database(db_url)
    with db.transaction() as conn:
        task = queue.next_task(conn, store.find_project(conn, "fixes"), store.find_user(conn, "ann"))
    db.dispose()
    assert task.payload["question"] == "Say the word" and task.payload["reference"] == "Alpha beta gamma."
