import numpy as np

from qualcode.arrays import concatenated_ranges


def test_concatenated_ranges_are_the_ranges_one_after_another():
    starts, lengths = np.array([5, 0, 9, 2]), np.array([3, 0, 1, 2])
    expected = np.concatenate(
        [np.arange(start, start + length) for start, length in zip(starts, lengths)]
    )
    np.testing.assert_array_equal(concatenated_ranges(starts, lengths), expected)
    assert (
        concatenated_ranges(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).tolist()
        == []
    )
