"""BM25's document frequencies kept by PostgreSQL triggers (knowledge_termstat), and the text leg
that reads only the postings of a query's rarest terms."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from knowledge.models import Chunk
from knowledge.retrieval import Fusion, search, search_space_for_bot
from knowledge.services import dataset_delete
from knowledge.tests.factories import (
    BotDatasetFactory,
    ChunkFactory,
    DatasetFactory,
    DocumentFactory,
    unit_vector,
)
from tenants.services import Actor

pytestmark = pytest.mark.django_db


def stored(dataset_id) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT lexeme, df FROM knowledge_termstat WHERE dataset_id = %s", [dataset_id]
        )
        return dict(cursor.fetchall())


def counted(dataset_id) -> dict[str, int]:
    """The same frequencies counted from the chunks themselves."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.lexeme, count(*) FROM knowledge_chunk c, unnest(c.search_vector) t"
            " WHERE c.dataset_id = %s GROUP BY t.lexeme",
            [dataset_id],
        )
        out = dict(cursor.fetchall())
    chunks = Chunk.all_tenants.filter(dataset_id=dataset_id).count()
    return {**out, "": chunks} if chunks else out


def test_frequencies_follow_every_way_chunks_change():
    dataset = DatasetFactory()
    first = DocumentFactory(tenant=dataset.tenant, dataset=dataset)
    second = DocumentFactory(tenant=dataset.tenant, dataset=dataset)
    a = ChunkFactory(tenant=dataset.tenant, document=first, text="Refunds take five days.")
    ChunkFactory(tenant=dataset.tenant, document=first, text="Refunds need a receipt.")
    ChunkFactory(tenant=dataset.tenant, document=second, text="Invoices arrive monthly.")
    assert stored(dataset.pk) == counted(dataset.pk)
    assert stored(dataset.pk)["refund"] == 2 and stored(dataset.pk)[""] == 3

    Chunk.all_tenants.filter(pk=a.pk).update(text="Exports run nightly.")  # re-texted
    assert stored(dataset.pk) == counted(dataset.pk)
    assert stored(dataset.pk)["refund"] == 1 and stored(dataset.pk)["export"] == 1

    first.delete()  # cascades to its chunks
    assert stored(dataset.pk) == counted(dataset.pk) == {"invoic": 1, "arriv": 1, "month": 1, "": 1}

    dataset_delete(tenant=dataset.tenant, actor=Actor.system("tests"), dataset=dataset)
    assert stored(dataset.pk) == {}


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_dataset_neither_deadlock_nor_lose_counts():
    dataset = DatasetFactory()
    documents = [DocumentFactory(tenant=dataset.tenant, dataset=dataset) for _ in range(2)]
    errors: list[BaseException] = []

    def replace_chunks(document, words: list[str]) -> None:
        try:
            for round_number in range(30):
                with transaction.atomic():
                    Chunk.all_tenants.filter(document=document).delete()
                    rows = [
                        Chunk(tenant=dataset.tenant, dataset=dataset, document=document,
                              ordinal=i, text=f"{word} shared round{round_number}")
                        for i, word in enumerate(words)  # opposite orders in the two threads
                    ]  # fmt: skip
                    Chunk.all_tenants.bulk_create(rows)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    words = [f"word{n}" for n in range(40)]
    threads = [
        threading.Thread(target=replace_chunks, args=(documents[0], words)),
        threading.Thread(target=replace_chunks, args=(documents[1], words[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stored(dataset.pk) == counted(dataset.pk)
    assert stored(dataset.pk)["share"] == 80


@pytest.fixture
def world():
    link = BotDatasetFactory()
    document = DocumentFactory(tenant=link.bot.tenant, dataset=link.dataset)
    return link.bot, document


def text_hits(bot, query: str, postings: int, all_terms_factor: float = 80.0) -> list[str]:
    fusion = Fusion(rrf_k=20, vector_weight=1.0, text_weight=1.0, candidates=100,
                    text_postings=postings, text_index_all_factor=all_terms_factor)  # fmt: skip
    hits = search(search_space_for_bot(bot), query=query, query_vector=unit_vector(0),
                  top_k=50, mode="text", fusion=fusion)  # fmt: skip
    return [h.text for h in hits]


def test_common_terms_score_candidates_but_bring_in_none(world):
    bot, document = world
    for n in range(20):
        ChunkFactory(tenant=bot.tenant, document=document, text=f"Our service note {n}.")
    ChunkFactory(tenant=bot.tenant, document=document, text="The service outage report.")
    ChunkFactory(tenant=bot.tenant, document=document, text="An outage of power.")
    # Unbounded: every chunk holding "service" or "outage" is a candidate.
    assert len(text_hits(bot, "service outage", postings=10_000)) == 22
    # Bounded to 5 postings: only "outage" (2 chunks) is read; "service" (21) adds to the
    # score of those it is in.
    assert sorted(text_hits(bot, "service outage", postings=5)) == [
        "An outage of power.",
        "The service outage report.",
    ]


@pytest.mark.parametrize("factor", [0.0, 1e12])  # always a scan of the rows; always the index
def test_with_no_rare_term_the_chunks_holding_every_term_are_read(world, factor):
    bot, document = world
    for n in range(10):
        ChunkFactory(tenant=bot.tenant, document=document, text=f"Service note {n}.")
        ChunkFactory(tenant=bot.tenant, document=document, text=f"Billing service entry {n}.")
    other = ChunkFactory(text="Billing service entry of another tenant.")  # never read
    # Both terms are in more than 5 chunks: the chunks holding both are read instead.
    hits = text_hits(bot, "billing service", postings=5, all_terms_factor=factor)
    assert len(hits) == 10 and all(text.startswith("Billing service") for text in hits)
    assert other.text not in hits


def test_rare_terms_are_found_alike_by_the_index_and_by_a_scan_in_every_language():
    link = BotDatasetFactory(dataset__language="english")
    bot = link.bot
    other = DatasetFactory(tenant=bot.tenant, language="simple")
    BotDatasetFactory(tenant=bot.tenant, bot=bot, dataset=other)
    for dataset, words in ((link.dataset, "Refunds"), (other, "refunds")):
        document = DocumentFactory(tenant=bot.tenant, dataset=dataset)
        ChunkFactory(tenant=bot.tenant, document=document, text=f"{words} take five days.")
        ChunkFactory(tenant=bot.tenant, document=document, text="Invoices arrive monthly.")
    space = search_space_for_bot(bot)
    found = {}
    for factor in (0.0, 1e12):  # always a scan of the rows; always the GIN index
        fusion = Fusion(rrf_k=20, vector_weight=1.0, text_weight=1.0, candidates=100,
                        text_index_factor=factor)  # fmt: skip
        hits = search(space, query="refunds", query_vector=unit_vector(0), top_k=10,
                      mode="text", fusion=fusion)  # fmt: skip
        found[factor] = sorted(h.text for h in hits)
    assert found[0.0] == found[1e12] == ["Refunds take five days.", "refunds take five days."]


CJK_PASSAGES = [
    "东京塔每晚都会亮灯，冬天的时候特别漂亮。",  # noqa: RUF001 - a full-width comma
    "退款会在五个工作日内退回到原来的银行卡。",
    "東京タワーは毎晩ライトアップされます。",
    "返金は五営業日以内に元のカードに戻ります。",
    "서울에서 가장 유명한 음식점은 명동에 있습니다.",
    "환불은 영업일 기준 5일 이내에 처리됩니다.",
    "Refunds are paid to the original card within five business days.",
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("东京塔什么时候亮灯", 0),  # "When does Tokyo Tower light up?"
        ("退款需要多久", 1),  # "How long does a refund take?"
        ("東京タワーはいつ光りますか", 2),
        ("返金はいつ戻りますか", 3),
        ("서울 음식점", 4),
        ("환불 처리", 5),
        ("refunds card", 6),
    ],
)
def test_chinese_japanese_and_korean_are_searched_by_character_bigrams(query, expected):
    """PostgreSQL's parser read an unspaced run as one word: "东京塔每晚都会亮灯" was a single
    lexeme, and no question but that very clause matched it (migration 0013)."""
    link = BotDatasetFactory(dataset__language="simple")
    document = DocumentFactory(tenant=link.bot.tenant, dataset=link.dataset)
    for text in CJK_PASSAGES:
        ChunkFactory(tenant=link.bot.tenant, document=document, text=text, language="simple")
    hits = text_hits(link.bot, query, postings=10_000)
    assert hits and hits[0] == CJK_PASSAGES[expected]
    assert stored(link.dataset.pk) == counted(link.dataset.pk)


GERMAN = "Die Rechnungen kommen monatlich."


def test_a_new_language_reindexes_the_datasets_chunks_and_their_frequencies():
    """``PATCH /v1/datasets/{id} {"language"}`` changed how questions are read but left the
    chunks in the old language: the text leg found none of them again (until every document
    was reingested), and the BM25 statistics stayed in the old language."""
    from tests.world import build_tenant

    side = build_tenant("polyglot")  # an english dataset with one chunk
    ChunkFactory(tenant=side.tenant, document=side.document, text=GERMAN)
    assert text_hits(side.bot, "Rechnung", postings=10_000) == []  # english: no such stem
    response = side.client().patch(
        f"/v1/datasets/{side.dataset.pk}", {"language": "german"}, format="json"
    )
    assert response.status_code == 200 and response.json()["language"] == "german"
    assert text_hits(side.bot, "Rechnung", postings=10_000) == [GERMAN]
    chunks = Chunk.all_tenants.filter(dataset_id=side.dataset.pk)
    assert set(chunks.values_list("language", flat=True)) == {"german"}
    assert stored(side.dataset.pk) == counted(side.dataset.pk)
    assert stored(side.dataset.pk)["rechnung"] == 1


def test_a_language_changed_in_the_admin_reindexes_the_chunks_too():
    from tests.staff import change_form_data, staff_client
    from tests.world import build_tenant

    side = build_tenant("polyglot")
    ChunkFactory(tenant=side.tenant, document=side.document, text=GERMAN)
    staff = staff_client(side.tenant)
    url = f"/admin/knowledge/dataset/{side.dataset.pk}/change/"
    posted = staff.post(url, change_form_data(staff.get(url), language="german"))
    assert posted.status_code == 302
    assert text_hits(side.bot, "Rechnung", postings=10_000) == [GERMAN]
    assert stored(side.dataset.pk) == counted(side.dataset.pk)


@pytest.mark.django_db(transaction=True)
def test_chunks_stored_while_the_language_changes_are_stored_in_the_new_one():
    """A worker that read the dataset's language before the change committed stored its
    chunks in the old one after the re-indexing had run: they were never found by text."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from knowledge.ingestion import document_ingest
    from knowledge.intake import document_add_upload
    from knowledge.services import dataset_update
    from tests.world import build_tenant

    side = build_tenant("polyglot")
    actor = Actor.system("tests")
    document = document_add_upload(tenant=side.tenant, actor=actor, dataset=side.dataset,
                                   upload=SimpleUploadedFile("de.md", GERMAN.encode())).document  # fmt: skip
    changed, stored_chunks = threading.Event(), threading.Event()
    outcome: list[str] = []

    def ingest() -> None:
        try:
            assert changed.wait(10)
            outcome.append(document_ingest(document_id=document.pk))
            stored_chunks.set()
        finally:
            connections.close_all()

    worker = threading.Thread(target=ingest)
    worker.start()
    with transaction.atomic():
        dataset_update(tenant=side.tenant, actor=actor, dataset=side.dataset,
                       changes={"language": "german"})  # fmt: skip
        changed.set()
        # The worker parses and embeds meanwhile, then waits to store until this commits.
        assert not stored_chunks.wait(3)
    worker.join(30)
    assert outcome == ["ready"]
    chunks = Chunk.all_tenants.filter(document=document)
    assert set(chunks.values_list("language", flat=True)) == {"german"}
    assert text_hits(side.bot, "Rechnung", postings=10_000) == [GERMAN]
    assert stored(side.dataset.pk) == counted(side.dataset.pk)


def test_the_search_vector_follows_the_text_and_is_not_set_apart_from_it():
    """Since migration 0013 a row trigger keeps ``search_vector``, not a generated column
    (changing that expression rewrote the table, its HNSW index included: 10.5 minutes with the
    table locked at 158,000 chunks). It must do what the generated column did."""
    link = BotDatasetFactory(dataset__language="simple")
    document = DocumentFactory(tenant=link.bot.tenant, dataset=link.dataset)
    chunk = ChunkFactory(
        tenant=link.bot.tenant, document=document, text="东京塔", language="simple"
    )

    def vector() -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT search_vector::text FROM knowledge_chunk WHERE id = %s", [chunk.pk]
            )
            return cursor.fetchone()[0]

    def update(assignment: str) -> None:
        with connection.cursor() as cursor:
            statement = f"UPDATE knowledge_chunk SET {assignment} WHERE id = %s"  # noqa: S608
            cursor.execute(statement, [chunk.pk])

    assert vector() == "'东京':1 '京塔':2"
    update("text = 'Refunds take days'")
    assert vector() == "'days':3 'refunds':1 'take':2"
    update("language = 'english'")
    assert vector() == "'day':3 'refund':1 'take':2"
    update("search_vector = to_tsvector('simple', 'something else')")  # not apart from the text
    assert vector() == "'day':3 'refund':1 'take':2"
    update("tags = '{faq}'")
    assert vector() == "'day':3 'refund':1 'take':2"
    assert stored(link.dataset.pk) == counted(link.dataset.pk)


def test_the_search_vector_holds_the_heading_path_after_the_text_at_weight_a():
    """The stored vector held the text alone: a question naming a chunk's section ("what does
    the guardrails list say") found it only by its embedding. Since migration 0016 the heading
    path follows the text at weight A; a chunk without headings keeps the vector it had."""
    link = BotDatasetFactory(dataset__language="english")
    document = DocumentFactory(tenant=link.bot.tenant, dataset=link.dataset)
    chunk = ChunkFactory(tenant=link.bot.tenant, document=document, text="Refunds take days",
                         heading_path=["Billing", "Canary lines"])  # fmt: skip
    plain = ChunkFactory(tenant=link.bot.tenant, document=document, text="Refunds take days")

    def vector(pk) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT search_vector::text FROM knowledge_chunk WHERE id = %s", [pk])
            return cursor.fetchone()[0]

    assert vector(chunk.pk) == "'bill':4A 'canari':5A 'day':3 'line':6A 'refund':1 'take':2"
    assert vector(plain.pk) == "'day':3 'refund':1 'take':2"
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE knowledge_chunk SET heading_path = '{Guardrails}' WHERE id = %s", [chunk.pk]
        )
    assert vector(chunk.pk) == "'day':3 'guardrail':4A 'refund':1 'take':2"
    assert stored(link.dataset.pk) == counted(link.dataset.pk)
    assert stored(link.dataset.pk)["guardrail"] == 1
