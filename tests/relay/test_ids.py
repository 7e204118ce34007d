from kernel.ids import ID_PATTERN, looks_like_id, new_id


def test_ids_made_in_a_burst_sort_in_creation_order():
    made = [new_id("evt") for _ in range(5000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_have_the_documented_shape():
    value = new_id("dlv")
    assert ID_PATTERN.match(value)
    assert looks_like_id(value, "dlv")
    assert not looks_like_id(value, "evt")
