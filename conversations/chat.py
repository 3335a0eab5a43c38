"""One chat turn: open (sync checks: bot, quota, session), persist (a stream's conversation and
user's message, stored before it is grounded), ground (sync: retrieval, refusal, prompt), run the
LLM (async: a stream of verified text pieces), finish (sync: store the answer and its usage, and
whatever was not stored yet, in one transaction).

The view (:mod:`conversations.chat_api`) drives these steps; the sync steps run in worker
threads so the event loop that serves streams never waits on the database or on the embedding
model.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from redis.lock import Lock

from bots.models import Bot
from bots.services import bot_for_key, bot_refusal
from chatbot_site import pii
from chatbot_site.database import insert_rows_sql, key_share_sql
from chatbot_site.errors import ApplicationError, AuthenticationFailed, NotFound, PermissionDenied
from chatbot_site.text import clip
from conversations.guardrails import (
    OutputGuard,
    ScopeVerdict,
    Unknown,
    blocked_topic,
    new_canary,
    out_of_scope,
    scope_topics,
    unknown_words,
)
from conversations.llm import Completion, Delta, LLMRequest, get_llm
from conversations.models import (
    Conversation,
    FinishReason,
    Message,
    MessageRole,
    RefusalReason,
    TurnReceipt,
)
from conversations.prompting import (
    CitationFilter,
    ScopeRules,
    build_messages,
    citations_for,
    fit_passages,
    trim_history,
)
from conversations.services import TURN_SECONDS, turn_claim, turn_release
from knowledge.embeddings import get_embedder
from knowledge.follow_ups import names_no_subject, refers_back, what_to_search
from knowledge.injection import detect, detect_passage
from knowledge.retrieval import (
    FollowUp,
    Hit,
    embed_queries,
    search,
    search_space_for_bot,
)
from tenants.authentication import FAILURE, key_problem
from tenants.models import ApiKey, Role, Tenant
from tenants.usage import quota_check, quota_release, usage_record, usage_sql

log = structlog.get_logger(__name__)

DEFAULT_REFUSAL = "Sorry, I can't help with that."


@dataclass
class Turn:
    tenant: Tenant
    api_key: ApiKey
    bot: Bot
    conversation: Conversation
    message_id: uuid.UUID
    question: str
    model: str
    passages: list[Hit]
    embedding_tokens: int
    started: float
    history: list[dict[str, str]] = field(default_factory=list)
    # A stored conversation's verdicts on its history's answers, one per message of ``history``
    # (Message.injection_flagged: None for the user's, and for answers stored before it was
    # kept); empty for a new conversation, whose history the client sent.
    history_flagged: list[bool | None] = field(default_factory=list)
    filter_tags: list[str] = field(default_factory=list)
    refusal: str | None = None
    refusal_message: str = ""
    request: LLMRequest | None = None
    new_messages: list[dict[str, str]] = field(default_factory=list)
    is_new_conversation: bool = False
    # The scope's PII entities: masked in the user's text (before it is stored, embedded, logged
    # or sent) and in the answer and its snippets.
    pii_entities: tuple[str, ...] = pii.ENTITIES
    canary: str = field(default_factory=new_canary, repr=False)
    persisted: bool = False
    persist_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # What the turn's store writes (its answer, whether its question too), decided once: by the
    # first store attempt, or by the write-ahead that spools it while that attempt is slow
    # (conversations.late_store), which must hold what the attempt writes.
    writing: Writing | None = field(default=None, repr=False)
    quota_held: bool = False  # tokens held against the monthly quota until the turn ends
    claim: Lock | None = field(default=None, repr=False)  # the conversation, until the turn ends
    _prompt_history: list[dict[str, str]] | None = field(default=None, repr=False)

    def prompt_history(self) -> list[dict[str, str]]:
        """The newest history that fits ``CHAT_HISTORY_TOKENS``: what the prompt carries."""
        if self._prompt_history is None:
            self._prompt_history = trim_history(
                self.history, budget=settings.CHAT_HISTORY_TOKENS, count=_count
            )
        return self._prompt_history

    def carry_in_prompt(self, history: list[dict[str, str]]) -> None:
        """What the prompt carries of the history instead (some of :meth:`prompt_history`)."""
        self._prompt_history = history


@dataclass
class Writing:
    """A turn's store as it is decided (:func:`turn_writing`): the answer's message and whether
    the question(s), and a new conversation, are written with it."""

    answer: Message
    question: bool


@dataclass
class Outcome:
    output: str
    citations: list[dict[str, Any]]
    finish_reason: str
    # None until counted: the provider's figures if it reported them, else ours.
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    model: str = ""
    # When the answer ended: its latency, even if it is stored later (conversations.late_store).
    ended: float = field(default_factory=time.perf_counter)
    # The answer's verdict under the document rules, decided when it is first stored.
    injection_flagged: bool | None = None

    @property
    def usage(self) -> dict[str, int]:
        prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


def _count(text: str) -> int:
    return get_embedder().count_tokens(text)


def _conversation_for(
    *, tenant: Tenant, api_key: ApiKey, bot: Bot, session_id: uuid.UUID
) -> Conversation:
    conversations = Conversation.objects.for_tenant(tenant).filter(bot=bot)
    if api_key.role != Role.ADMIN:
        conversations = conversations.filter(api_key=api_key)
    try:
        return conversations.get(pk=session_id)
    except Conversation.DoesNotExist:
        raise NotFound("Conversation not found.") from None


def _stored_history(conversation: Conversation) -> tuple[list[dict[str, str]], list[bool | None]]:
    """The conversation's newest 100 messages, oldest first, and each one's stored verdict
    (:attr:`Turn.history_flagged`)."""
    rows = (
        Message.objects.for_tenant(conversation.tenant_id)
        .filter(conversation=conversation)
        .exclude(content="")
        .order_by("-created_at")
        .values_list("role", "content", "injection_flagged")[:100]
    )
    ordered = list(rows)[::-1]
    return (
        [{"role": role, "content": content} for role, content, _ in ordered],
        [flagged for _, _, flagged in ordered],
    )


def chat_open(
    *,
    tenant: Tenant,
    api_key: ApiKey,
    bot_id: uuid.UUID,
    session_id: uuid.UUID | None,
    messages: Sequence[dict[str, str]],
    metadata: dict[str, Any],
    filter_tags: Sequence[str] = (),
    stream: bool = False,
) -> Turn:
    """Every check a stream makes before its ``start`` event: the bot, the session (free of
    another turn), the quota. Nothing is written yet (:func:`chat_persist` does that), so
    ``start`` is not held up by writes, and a refused request leaves no trace."""
    started = time.perf_counter()
    bot = bot_for_key(tenant=tenant, api_key=api_key, bot_id=bot_id)
    scope = bot.scope
    entities = tuple(scope.pii_entities) if scope is not None else pii.ENTITIES
    if entities:  # nothing raw goes further: not the database, the logs, the providers
        messages = [{**m, "content": pii.mask(m["content"], entities)} for m in messages]
        metadata = pii.mask_data(metadata, entities)
    question = messages[-1]["content"]
    if session_id is not None:
        conversation = _conversation_for(
            tenant=tenant, api_key=api_key, bot=bot, session_id=session_id
        )
        history, history_flagged = _stored_history(conversation)
        new_messages = [dict(messages[-1])]
        is_new = False
    else:
        history, history_flagged = [dict(m) for m in messages[:-1]], []
        new_messages = [dict(m) for m in messages]
        # Not saved yet; its id is the session_id the `start` event announces.
        conversation = Conversation(
            id=uuid.uuid4(),
            tenant=tenant,
            bot=bot,
            api_key=api_key,
            title=clip(" ".join(question.split()), 200),
            metadata=metadata,
        )
        is_new = True
    llm = get_llm()
    turn = Turn(
        tenant=tenant,
        api_key=api_key,
        bot=bot,
        conversation=conversation,
        message_id=uuid.uuid4(),
        question=question,
        model=llm.name if llm.name == "extractive" else (bot.model or settings.CHAT_MODEL),
        passages=[],
        embedding_tokens=0,
        started=started,
        history=history,
        history_flagged=history_flagged,
        filter_tags=list(filter_tags),
        refusal_message=(scope.refusal_message if scope is not None else DEFAULT_REFUSAL),
        new_messages=new_messages,
        is_new_conversation=is_new,
        pii_entities=entities,
    )
    try:
        # A session the client knows — one it continues, or the one a stream's `start` announces
        # before its answer is stored — takes one turn at a time (409 while one is answered).
        if session_id is not None or stream:
            turn.claim = turn_claim(conversation_id=conversation.pk)
        # Before any work that costs tokens: the turn holds the most it may cost until stored.
        if tenant.monthly_token_quota is not None:  # else nothing to check or hold: not counted
            hold = (str(turn.message_id), _most_tokens(turn))
            turn.quota_held = quota_check(tenant=tenant, hold=hold, hold_seconds=TURN_SECONDS)
    except BaseException:
        chat_release(turn)
        raise
    return turn


def _most_tokens(turn: Turn) -> int:
    """The most a turn can cost, to hold against the quota: the question, the system prompt,
    the passages' and the history's budgets, the bot's longest answer."""
    return (
        _count(turn.question)
        + _count(turn.bot.system_prompt or "")
        + settings.CHAT_CONTEXT_TOKENS
        + settings.CHAT_HISTORY_TOKENS
        + turn.bot.max_output_tokens
    )


def chat_release(turn: Turn) -> None:
    """The end of a turn, whatever it was: its hold on the quota and its claim on the
    conversation go. Once: later calls do nothing."""
    if turn.quota_held:
        turn.quota_held = False
        quota_release(tenant_id=turn.tenant.pk, holder=str(turn.message_id))
    if turn.claim is not None:
        claim, turn.claim = turn.claim, None
        turn_release(claim)


def chat_failed(turn: Turn) -> None:
    """The end of a JSON turn that failed before its answer (grounding: the embedding
    provider, the database): nothing of it is stored, but the embedding tokens it had spent
    (its question's, a scope's topics') were billed all the same — they go into the usage
    roll-up, one request, as a stored turn's would. They were counted nowhere: a scope check
    that failed after the question was embedded (502) spent them for free. (A stream's failed
    turn is stored, its tokens with it: :func:`chat_finish`.)"""
    try:
        if turn.embedding_tokens:
            usage_record(
                tenant=turn.tenant,
                bot_id=turn.bot.pk,
                api_key_id=turn.api_key.pk,
                embedding_tokens=turn.embedding_tokens,
            )
    except DatabaseError as exc:  # the database gone is likely why the turn failed: say so
        log.warning("chat_usage_lost", embedding_tokens=turn.embedding_tokens,
                    error=type(exc).__name__)  # fmt: skip
    finally:
        chat_release(turn)


def chat_persist(turn: Turn) -> None:
    """Store the conversation (if new) and the user's message(s); once, whichever of the
    grounding hop and a cancelled stream's store comes first. A stream does this early, so
    that the session its ``start`` event announced exists while the answer streams; a JSON
    answer leaves it to :func:`chat_finish`, which stores the turn in one statement."""
    with turn.persist_lock:
        if turn.persisted:
            return
        _store(turn, question=True, answer=None)
        turn.persisted = True


def _store(
    turn: Turn, *, question: bool, answer: Message | None, usage: dict[str, Any] | None = None
) -> None:
    """Write the turn's rows not stored yet: the question (and a new conversation), the answer;
    the conversation's count and last message time follow; then ``usage`` (the tokens, as
    :func:`tenants.usage.usage_sql` takes them) is added to the roll-up, whatever was stored,
    on the day of the answer's ``created_at`` (the day, and month, the message shows).

    One query: one statement for the rows, the roll-up's after it, sent together in one
    transaction (BEGIN, the query, COMMIT: three round trips). It was six (BEGIN, the bot's
    lock, the conversation, the messages, the usage, COMMIT) through the ORM: 2.4-2.9 ms of
    CPU a JSON turn's store, now 1.3-1.5 (docs/BENCHMARKS.md).

    The bot's row is share-locked first: a bot deleted while its turn was answered
    (:func:`bots.services.bot_delete` locks it first) took its conversations with it, and the
    turn's new conversation then failed its foreign key at commit — a 500, and the turn's
    tokens, already spent, were not counted. Now the deletion waits for the turn and deletes
    what it stored, or the turn finds its bot gone and stores no conversation (its usage is
    still counted: usage outlives a bot).

    A stored conversation is updated before its messages are written, which locks its row: a
    deletion (:func:`conversations.services.conversation_delete` locks it first) then either
    waits for this turn and deletes its messages too, or has deleted the conversation, and the
    turn's messages are not written (they would point at nothing)."""
    written = turn_write(
        tenant_id=turn.tenant.pk,
        bot_id=turn.bot.pk,
        conversation=turn.conversation,
        create=question and turn.is_new_conversation,
        questions=turn.new_messages if question else (),
        answer=answer,
        usage=usage,
    )
    if written == "bot_deleted":
        log.info("chat_bot_deleted", bot_id=str(turn.bot.pk))
    elif written == "conversation_deleted":
        log.info("chat_conversation_deleted", conversation_id=str(turn.conversation.pk))


# What :func:`turn_write` did: the turn stored, or its bot (and so its conversation) or its
# conversation gone, no message written (the usage counted all the same).
TurnWritten = Literal["stored", "bot_deleted", "conversation_deleted"]


def turn_write(
    *,
    tenant_id: uuid.UUID,
    bot_id: uuid.UUID,
    conversation: Conversation,
    create: bool,
    questions: Sequence[dict[str, str]],
    answer: Message | None,
    usage: dict[str, Any] | None,
) -> TurnWritten:
    """:func:`_store`'s statement from the turn's parts (what a turn kept for a late store
    holds: :mod:`conversations.late_store`): ``create`` the conversation (else it is updated),
    the ``questions``' rows, the ``answer`` and its receipt (:class:`TurnReceipt`), the
    ``usage``. An answer whose id is stored already fails it (``IntegrityError``: its receipt,
    or its message), and nothing of it is written: the answer, its question and its usage are
    committed together or not at all — also when its conversation or bot is gone (no message
    written, the usage counted, once): what it did is returned, the caller logs it."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        Message(
            tenant_id=tenant_id, conversation=conversation, role=m["role"], content=m["content"]
        )
        for m in questions
    ]
    if answer is not None:
        rows.append(answer)  # after the question's rows: it is the newer
    # The rows' times, a microsecond apart in order, and the conversation's last message time
    # is the last of them (it was read before them, and came out a few µs before the answer's).
    for n, row in enumerate(rows):
        row.created_at = row.created_at or now + dt.timedelta(microseconds=n)
    last = max((row.created_at for row in rows), default=now)
    bot_sql, params = key_share_sql(Bot, tenant_id, [bot_id])
    if create:
        conversation.message_count = len(rows)
        conversation.last_message_at = last
        table, columns, values, values_params = insert_rows_sql([conversation])
        write = (
            f"INSERT INTO {table} {columns} SELECT v.* FROM ({values}) AS v "  # noqa: S608
            "WHERE EXISTS (SELECT FROM bot) RETURNING id"
        )
        params += values_params
    else:
        # Never back: a turn that took its time before another turn's commit is older.
        write = (
            f"UPDATE {Conversation._meta.db_table} SET message_count = message_count + %s, "  # noqa: S608
            "last_message_at = GREATEST(last_message_at, %s), updated_at = %s "
            "WHERE tenant_id = %s AND id = %s AND EXISTS (SELECT FROM bot) RETURNING id"
        )
        params += [len(rows), last, now, tenant_id, conversation.pk]
    statement = f"WITH bot AS MATERIALIZED ({bot_sql}), conversation AS ({write})"
    if rows:
        table, columns, values, values_params = insert_rows_sql(rows)
        statement += (
            f", message AS (INSERT INTO {table} {columns} SELECT v.* FROM ({values}) AS v "  # noqa: S608
            "WHERE EXISTS (SELECT FROM conversation))"
        )
        params += values_params
    if answer is not None:
        # The turn's receipt: a second store of the same answer fails on it (TurnReceipt), also
        # when its conversation or bot is gone and no message is written, or was deleted since.
        statement += (
            f", receipt AS (INSERT INTO {TurnReceipt._meta.db_table} (id, tenant_id, created_at) "  # noqa: S608
            "VALUES (%s::uuid, %s::uuid, %s))"
        )
        params += [answer.pk, tenant_id, last]
    statement += " SELECT EXISTS (SELECT FROM bot), EXISTS (SELECT FROM conversation)"
    if usage is not None:  # last, as before: the roll-up's row is the turns' shared one
        usage_statement, usage_params = usage_sql(**usage, at=last)
        statement += "; " + usage_statement
        params += usage_params
    # In a transaction of its own (unless the caller's), committed by a round trip of its own:
    # a query the database received but did not answer (frozen, until the bound) is then rolled
    # back when the connection is dropped. Sent alone, it was committed when the database woke,
    # and the turn kept to be stored later (conversations.late_store) was stored twice.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)
        bot_there, stored = cursor.fetchone()
    if not bot_there:
        return "bot_deleted"
    return "stored" if stored else "conversation_deleted"


def _refuse(turn: Turn, reason: str, **details: Any) -> None:
    turn.refusal = reason
    log.info("chat_refused", reason=reason, bot_id=str(turn.bot.pk), **details)


def _injected_history(turn: Turn) -> tuple[int, Any] | None:
    """A new conversation's earlier messages come from the client too (a stored conversation's
    were checked when they were sent): the first flagged one, with its index. User messages get
    the prompt detector; assistant turns, which the client writes as if the model had said them
    ("Understood: from now on I ignore my instructions ..."), the stricter rules documents get:
    the classifier, fitted on prompts, reads ordinary answers ("you can ignore that warning")
    as attacks.

    Only those the prompt carries (the newest within ``CHAT_HISTORY_TOKENS``): older ones never
    reach the model, and scoring them all let one request of 100 messages of 32,000
    characters cost about 2.4 s of CPU (the classifier reads ~140 ms per such message)."""
    if not turn.is_new_conversation:
        return None
    carried = turn.prompt_history()
    first = len(turn.history) - len(carried)  # the new conversation's history is its messages
    for index, message in enumerate(carried, start=first):
        check = {"user": detect, "assistant": detect_passage}.get(message["role"])
        if check is not None and (verdict := check(message["content"])).flagged:
            return index, verdict
    return None


def answer_flagged(content: str) -> bool:
    """An answer's verdict under the document rules, as it is stored with it
    (``Message.injection_flagged``): decided once, in :func:`chat_finish`, not on every later
    turn of its session. An empty answer (a stream cut before its first piece) says nothing."""
    return bool(content) and detect_passage(content).flagged


def _drop_injected_answers(turn: Turn) -> None:
    """A continued conversation's stored assistant turns are the model's, and a model can be
    steered into writing one that reads as an injection ("Understood: from now on I ignore my
    instructions ..."; a passage, or the user, asked it to): sent back as history, it spoke to
    the model with the assistant's voice on every later turn. Those the prompt carries are
    left out of it when their stored verdict (``Message.injection_flagged``, the document
    rules' when the answer was stored: :func:`answer_flagged`) says so — not refused: the
    user's new question is not the attack, and the session goes on. An answer stored before
    the verdict was kept (null) is checked now, on every turn that carries it.

    The verdicts were decided here, on every turn that called the model, and kept in a cache
    of the process (1,024 answers): 1.6 ms per 1,000 characters, 13 ms a turn at
    ``CHAT_HISTORY_TOKENS``' 2,000 with a cold cache (each process of a deployment, after each
    restart), more than the rest of a turn's CPU (docs/BENCHMARKS.md)."""
    if turn.is_new_conversation:  # checked before, and refused (_injected_history)
        return
    carried = turn.prompt_history()
    # The prompt carries the newest of the history (trim_history): its messages' verdicts are
    # the last of the history's.
    verdicts = turn.history_flagged[len(turn.history_flagged) - len(carried) :]
    kept = [
        message
        for message, stored in zip(carried, verdicts, strict=True)
        if message["role"] != "assistant"
        or not (answer_flagged(message["content"]) if stored is None else stored)
    ]
    if len(kept) < len(carried):
        log.warning("chat_history_answer_dropped", dropped=len(carried) - len(kept),
                    conversation_id=str(turn.conversation.pk))  # fmt: skip
        turn.carry_in_prompt(kept)


# A follow-up's context is the previous message's subject, not a pasted document: its first
# 2,000 characters (more than the local embedder reads) bound the terms and tokens it adds.
FOLLOW_UP_CONTEXT_CHARS = 2_000


def _previous_question(turn: Turn) -> list[str]:
    """The conversation's last user message before the question that names a subject (masked
    like everything the turn holds), as a one-item list; none when the history has none or
    steering is off. A message that names none ("Tell me more.") or points back ("How do I
    configure it?") was about the one before it: after "How do I create an API key?", "Tell me
    more.", the question "Can you explain that in more detail?" means API keys too, not "Tell
    me more." (which found an error-format passage); after "What is the vector index?", "How do
    I configure it?", "Tell me more." was judged as "How do I configure it?" and refused
    (no_relevant_context on the demo bot). With no message that names a subject, the last
    one."""
    if settings.RETRIEVAL_HISTORY_WEIGHT <= 0:
        return []
    earlier = [m["content"] for m in turn.history if m["role"] == "user" and m["content"].strip()]
    subjects = [text for text in earlier if not (names_no_subject(text) or refers_back(text))]
    subjects = subjects or earlier
    return [text[:FOLLOW_UP_CONTEXT_CHARS] for text in subjects[-1:]]


def chat_ground(turn: Turn) -> None:
    """Guard the question, retrieve the passages, build the prompt (``turn.request``) — or
    decide a refusal (``turn.refusal``), which costs no LLM call.

    In order: prompt injection, a blocked topic, (retrieval), out of scope, no relevant
    context. The question is embedded once (after the injection check, which needs no vector);
    that vector serves the scope checks and the search."""
    bot, scope = turn.bot, turn.bot.scope
    verdict = detect(turn.question)  # no embedding needed: an injection costs nothing
    if verdict.flagged:
        _refuse(turn, RefusalReason.PROMPT_INJECTION.value, score=round(verdict.score, 3),
                rules=list(verdict.reasons))  # fmt: skip
        return
    if (earlier := _injected_history(turn)) is not None:
        _refuse(turn, RefusalReason.PROMPT_INJECTION.value, score=round(earlier[1].score, 3),
                rules=list(earlier[1].reasons), message_index=earlier[0])  # fmt: skip
        return
    space = search_space_for_bot(bot, filter_tags=turn.filter_tags)
    # A follow-up ("How much does it cost?") is searched in the light of the previous user
    # message; the question and that message are embedded in one call.
    previous = _previous_question(turn)
    vectors, turn.embedding_tokens = embed_queries(
        [turn.question, *previous], tenant_id=turn.tenant.pk
    )
    vector = vectors[0]
    context = (
        FollowUp(text=previous[0], vector=vectors[1], weight=settings.RETRIEVAL_HISTORY_WEIGHT)
        if previous
        else None
    )
    # A follow-up that names nothing ("Can you explain that?", knowledge.follow_ups)
    # means what the previous user message was about: that message is searched and judged
    # (injection, blocked topics, scope, min_relevance), steered by the follow-up. One with a
    # subject of its own is judged on its own words, whatever came before.
    judged, judged_vector, context = what_to_search(turn.question, vector, context)
    if judged != turn.question:
        log.info("chat_follow_up_judged_as_previous")
        # A stored session's earlier message was checked when it was sent, and refused if it
        # was an injection; "Tell me more." after it must not search and answer it now.
        if (verdict := detect(judged)).flagged:
            _refuse(turn, RefusalReason.PROMPT_INJECTION.value, score=round(verdict.score, 3),
                    rules=list(verdict.reasons))  # fmt: skip
            return

    def spent(tokens: int) -> None:  # the scope's topics, embedded for this turn's checks
        turn.embedding_tokens += tokens

    unknown: Unknown | None = None
    if scope is not None:
        topics = scope_topics(scope.description, scope.allowed_topics)
        # One query for the names and words no document holds (none without topics): a blocked
        # topic "competitors" reads the names ("Would Haystack serve us better?"), scope both.
        unknown = unknown_words(judged, space=space, scope_texts=topics) if topics else None
        for text, text_vector in {turn.question: vector, judged: judged_vector}.items():
            blocked = blocked_topic(
                question=text, vector=text_vector, topics=scope.blocked_topics, allowed=topics,
                unknown_names=unknown.names if unknown is not None and text == judged else (),
                tenant_id=turn.tenant.pk, spent=spent,
            )  # fmt: skip
            if blocked is not None:
                _refuse(turn, RefusalReason.BLOCKED_TOPIC.value, topic=blocked.matched,
                        similarity=round(blocked.topic_similarity or 0, 3))  # fmt: skip
                return
    hits = search(space, query=judged, query_vector=judged_vector, top_k=bot.top_k, context=context)
    # A hit's relevance is the judged question's own (the question, or the previous message for
    # a follow-up that names nothing), so scope and min_relevance are decided on it alone: an
    # earlier on-topic message cannot carry an off-topic follow-up past them.
    evidence = max((hit.relevance for hit in hits), default=0.0)
    if scope is not None:
        scoped: ScopeVerdict = out_of_scope(
            vector=judged_vector,
            topics=topics,
            evidence=evidence,
            tenant_id=turn.tenant.pk,
            unknown=unknown,
            spent=spent,
        )
        if scoped.reason is not None and not hits and not scope.answer_without_context:
            # Nothing to search (no document of the bot's datasets ready yet, or none with the
            # request's tags): there is no evidence to judge the question by, and the topics
            # alone refuse on-topic questions too. No passage is what it lacks.
            _refuse(turn, RefusalReason.NO_RELEVANT_CONTEXT.value, evidence=0.0,
                    similarity=round(scoped.topic_similarity or 0, 3), searched=0)  # fmt: skip
            return
        if scoped.reason is not None:
            _refuse(turn, scoped.reason, similarity=round(scoped.topic_similarity or 0, 3),
                    evidence=round(evidence, 3), unknown_name=bool(unknown and unknown.names),
                    unknown_word=bool(unknown and unknown.words))  # fmt: skip
            return
    min_relevance = scope.min_relevance if scope is not None else 0.0
    relevant = [hit for hit in hits if hit.relevance >= min_relevance]
    if not relevant and not (scope is not None and scope.answer_without_context):
        _refuse(turn, RefusalReason.NO_RELEVANT_CONTEXT.value, evidence=round(evidence, 3))
        return
    passages = fit_passages(relevant, budget=settings.CHAT_CONTEXT_TOKENS, count=_count)
    rules = ScopeRules(
        description=scope.description if scope is not None else "",
        allowed_topics=list(scope.allowed_topics) if scope is not None else [],
        blocked_topics=list(scope.blocked_topics) if scope is not None else [],
    )
    turn.passages = passages
    _drop_injected_answers(turn)
    turn.request = LLMRequest(
        model=turn.model,
        messages=build_messages(
            system_prompt=bot.system_prompt,
            rules=rules,
            passages=passages,
            history=turn.prompt_history(),
            question=turn.question,
            canary=turn.canary,
        ),
        question=turn.question,
        # What an answer without a chat model (extractive) picks sentences for too: for a
        # follow-up that names nothing or points back, the subject it refers to.
        subject="" if judged == turn.question else judged,
        passages=passages,
        temperature=bot.temperature,
        max_tokens=bot.max_output_tokens,
    )


class TurnInterrupted(Exception):
    """A turn under way that its request's credentials no longer allow: ``error`` is what the
    same request would get now, ``reason`` says why, for the logs."""

    def __init__(self, reason: str, error: ApplicationError) -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


def turn_interruption(turn: Turn) -> TurnInterrupted | None:
    """Whether the turn's key, tenant and bot still allow it, as its request was checked: the
    key not revoked or expired, its tenant active, the bot there, active and in the key's
    ``bot_ids``. One query by primary keys; a stream asks at most every ``SSE_PING_SECONDS``."""
    bot_active = Bot.all_tenants.filter(tenant_id=OuterRef("tenant_id"), pk=turn.bot.pk)
    key = (
        ApiKey.all_tenants.select_related("tenant")
        .filter(pk=turn.api_key.pk, tenant_id=turn.tenant.pk)
        .annotate(bot_active=Subquery(bot_active.values("is_active")[:1]))
        .first()
    )
    reason = "unknown_key" if key is None else key_problem(key, timezone.now())
    if reason is not None or key is None:
        return TurnInterrupted(reason or "unknown_key", AuthenticationFailed(FAILURE))
    refused = bot_refusal(api_key=key, bot_id=turn.bot.pk, is_active=key.bot_active)
    if refused is not None:
        reason = "bot_inactive" if isinstance(refused, PermissionDenied) else "bot_not_found"
        return TurnInterrupted(reason, refused)
    return None


@dataclass
class Runner:
    """Runs the LLM for a turn and keeps what it produced, so that whatever ends the stream —
    the end, an error, the client leaving — the answer so far can be stored."""

    turn: Turn
    emitted: list[str] = field(default_factory=list)
    completion: Completion | None = None
    # A stream's relay reads the provider at most every LLM_STREAM_BATCH_SECONDS: a token at a
    # time would cost an event-loop wake-up each. A JSON answer waits for all of it anyway.
    paced: bool = False

    def __post_init__(self) -> None:
        self.guard = OutputGuard(canary=self.turn.canary, pii_entities=self.turn.pii_entities)
        self.filter = CitationFilter(len(self.turn.passages))

    async def deltas(self) -> AsyncIterator[str]:
        """Verified pieces of the answer: through the output guard (canary → PolicyBlocked,
        inert links, masked PII), then the citation filter (markers naming no passage removed).

        The filter counts the passages the turn has now: a stream's runner is made before its
        turn is grounded (its outcome is stored if grounding fails), and one runner serves the
        whole stream (a second one built the guard's canary forms again, 0.3 ms a stream)."""
        self.filter = CitationFilter(len(self.turn.passages))
        if self.turn.request is None:  # a refusal: the scope's message, no LLM call
            self.emitted.append(self.turn.refusal_message)
            yield self.turn.refusal_message
            return
        pace = settings.LLM_STREAM_BATCH_SECONDS if self.paced else 0.0
        async with contextlib.aclosing(get_llm().stream(self.turn.request, pace=pace)) as stream:
            async for item in stream:
                if isinstance(item, Delta):
                    piece = self.filter.feed(self.guard.feed(item.text))
                    if piece:
                        self.emitted.append(piece)
                        yield piece
                else:
                    self.completion = item
        rest = self.filter.feed(self.guard.flush()) + self.filter.flush()
        if rest:
            self.emitted.append(rest)
            yield rest

    def outcome(self, finish_reason: str | None = None) -> Outcome:
        output = "".join(self.emitted)
        if self.turn.request is None:  # a refusal, or the turn ended before grounding
            reason = FinishReason.REFUSAL.value if self.turn.refusal else finish_reason
            # The model the turn was for, as the chat answer names it: the stored message said
            # "" where the answer said the model.
            return Outcome(output, [], reason or FinishReason.ERROR.value, 0, 0, self.turn.model)
        completion = self.completion
        reason = finish_reason or (completion.finish_reason if completion else "stop")
        return Outcome(
            output=output,
            citations=citations_for(
                self.filter.cited, self.turn.passages, pii_entities=self.turn.pii_entities
            ),
            finish_reason=reason,
            prompt_tokens=completion.prompt_tokens if completion else None,
            completion_tokens=completion.completion_tokens if completion else None,
            model=(completion.model if completion else "") or self.turn.model,
        )


def _checked_usage(request: LLMRequest, outcome: Outcome) -> None:
    """The provider's token counts, where they could be true: a whole number, no more prompt
    tokens than the bytes sent (plus each message's framing), no more completion tokens than
    the ``max_tokens`` asked for and no fewer than one per 64 bytes of the answer. Anything else
    (a negative count took a tenant's usage below zero; 10**12 spent its monthly quota, or
    failed the store; 7 for a 16 kB answer) is replaced by our own count."""
    sent = sum(len(m["content"].encode()) + 16 for m in request.messages)
    bounds = {
        "prompt_tokens": (0, sent + 256),
        "completion_tokens": (len(outcome.output.encode()) // 64, request.max_tokens + 16),
    }
    for name, (least, most) in bounds.items():
        value = getattr(outcome, name)
        if value is None:
            continue
        if type(value) is not int or not least <= value <= most:
            log.warning("llm_usage_implausible", field=name, value=repr(value)[:40],
                        least=least, most=most)  # fmt: skip
            setattr(outcome, name, None)


def answer_message(turn: Turn, outcome: Outcome) -> Message:
    """The assistant's message as it is stored, its tokens counted and its verdict decided
    (into ``outcome``, once: a late store's attempts keep the first's)."""
    if turn.request is not None:
        _checked_usage(turn.request, outcome)
        if outcome.prompt_tokens is None:  # the backend did not report: count what was sent
            unanswered = outcome.finish_reason == FinishReason.ERROR and not outcome.output
            outcome.prompt_tokens = 0 if unanswered else sum(
                _count(m["content"]) for m in turn.request.messages
            )  # fmt: skip
        if outcome.completion_tokens is None:
            outcome.completion_tokens = _count(outcome.output)
    latency_ms = int((outcome.ended - turn.started) * 1000)
    if outcome.injection_flagged is None:  # once: a late store's attempts keep the first
        outcome.injection_flagged = answer_flagged(outcome.output)
    return Message(
        id=turn.message_id,
        tenant=turn.tenant,
        conversation=turn.conversation,
        role=MessageRole.ASSISTANT,
        content=outcome.output,
        citations=outcome.citations,
        prompt_tokens=outcome.prompt_tokens or 0,
        completion_tokens=outcome.completion_tokens or 0,
        embedding_tokens=turn.embedding_tokens,
        model=outcome.model,
        finish_reason=outcome.finish_reason,
        refusal_reason=turn.refusal,
        latency_ms=latency_ms,
        injection_flagged=outcome.injection_flagged,
    )


def turn_writing(turn: Turn, outcome: Outcome) -> Writing:
    """What the turn's store writes, decided once (called under ``turn.persist_lock``): its
    answer (:func:`answer_message`) and, if no one stored it yet, its question — from now on
    the store's to write (a stream's grounding hop still under way must not store it too).
    Every later attempt, and the spool's copy (:func:`conversations.late_store.late_turn`),
    writes the same."""
    if turn.writing is None:
        turn.writing = Writing(answer_message(turn, outcome), question=not turn.persisted)
        turn.persisted = True
    return turn.writing


def chat_finish(turn: Turn, outcome: Outcome) -> Message:
    """Store the assistant's message and add the turn's tokens to the usage roll-up — with the
    conversation and the question when they are not stored yet (a JSON answer, or a stream
    cancelled before grounding): one transaction for the whole turn."""
    try:
        with turn.persist_lock:  # a stream's grounding hop may still be storing the question
            writing = turn_writing(turn, outcome)
            message = writing.answer
            usage = {
                "tenant": turn.tenant,
                "bot_id": turn.bot.pk,
                "api_key_id": turn.api_key.pk,
                "prompt_tokens": outcome.prompt_tokens or 0,
                "completion_tokens": outcome.completion_tokens or 0,
                "embedding_tokens": turn.embedding_tokens,
            }
            _store(turn, question=writing.question, answer=message, usage=usage)
    finally:
        chat_release(turn)  # its tokens are in the roll-up now (or the turn is lost anyway)
    log.info(
        "chat_turn",
        bot_id=str(turn.bot.pk),
        conversation_id=str(turn.conversation.pk),
        finish_reason=outcome.finish_reason,
        refusal=turn.refusal,
        passages=len(turn.passages),
        citations=len(outcome.citations),
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        latency_ms=message.latency_ms,
    )
    return message
