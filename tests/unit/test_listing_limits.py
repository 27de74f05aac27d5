"""The page sizes of a listing taken page by page (calico.etcd_gateway.next_limit): whole
pages, then a last page of an eighth, never a sliver before it."""

from __future__ import annotations

from calico.etcd_gateway import next_limit


def test_whole_pages_until_the_end_is_near():
    assert next_limit(2000, 8000) == 2000
    assert next_limit(2000, 2251) == 2000  # then 251 left: read whole, no page of 1


def test_the_end_is_cut_so_the_last_page_is_an_eighth():
    assert next_limit(2000, 2250) == 2000  # 2,000 then 250
    assert next_limit(2000, 2000) == 1750  # 1,750 then 250
    assert next_limit(2000, 501) == 251  # 251 then 250
    assert next_limit(500, 500) == 438  # 438 then 62


def test_a_short_rest_is_read_at_once():
    assert next_limit(2000, 500) == 2000
    assert next_limit(2000, 250) == 2000
    assert next_limit(2000, 1) == 2000
    assert next_limit(1, 5) == 1  # a page of one stays one
