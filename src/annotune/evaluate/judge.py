"""Optional LLM-as-judge: any OpenAI-compatible endpoint grades each run's answer against the reference as
correct, partly or wrong, with a one-line reason. Off unless `--judge-url` is given; the key comes from
``$ANNOTUNE_JUDGE_API_KEY`` (or ``$OPENAI_API_KEY``)."""

from __future__ import annotations

import os
import re

from annotune.errors import AnnotuneError

PROMPT = """You grade answers to questions against a reference answer.

Question: {question}
Reference answer: {reference}
Answer to grade: {answer}

Is the answer correct (it says what the reference says), partly correct, or wrong? Reply in exactly this form:
VERDICT: correct|partly|wrong
REASON: one short sentence"""
_VERDICT = re.compile(r"verdict\s*:\s*\**\s*(correct|partly|wrong)", re.IGNORECASE)
_REASON = re.compile(r"reason\s*:\s*(.+)", re.IGNORECASE)
SCORES = {"correct": 1.0, "partly": 0.5, "wrong": 0.0}


class Judge:
    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 120.0):
        from openai import OpenAI

        key = api_key or os.environ.get("ANNOTUNE_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.client, self.model = OpenAI(base_url=url, api_key=key, timeout=timeout, max_retries=2), model
        self.url = url

    def grade(self, question: str, reference: str, answer: str) -> dict:
        import openai

        try:
            reply = self.client.chat.completions.create(model=self.model, temperature=0, max_tokens=100, messages=[
                {"role": "user", "content": PROMPT.format(question=question, reference=reference, answer=answer)}])
        except openai.APIError as exc:
            raise AnnotuneError(f"the judge at {self.url} failed: {exc}") from None
        text = reply.choices[0].message.content or ""
        verdict = _VERDICT.search(text)
        reason = _REASON.search(text)
        return {"verdict": verdict.group(1).lower() if verdict else "unparsed",
                "reason": (reason.group(1).strip() if reason else text.strip())[:300]}

    def judge_all(self, questions, results) -> dict:
        """Grade every run's answers (baselines too); adds ``judge`` to each answer, returns the summary."""
        summary = {}
        for name, result in results.items():
            for question, answer in zip(questions, result.answers):
                answer["judge"] = self.grade(question.text, question.reference, answer["text"])
            graded = [SCORES[a["judge"]["verdict"]] for a in result.answers if a["judge"]["verdict"] in SCORES]
            summary[name] = {"score": sum(graded) / len(graded) if graded else None, "graded": len(graded),
                             "unparsed": len(result.answers) - len(graded)}
            result.summary["judge"] = summary[name]
        return {"url": self.url, "model": self.model, "models": summary}
