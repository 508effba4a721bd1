import essence
from essence.testing import check_component


def test_pixel_stats_meets_the_encoder_contract():
    registration = essence.get_registry().get("encoder", "pixel-stats")
    assert registration.plugin == "essence-example-plugin"
    encoder = check_component(registration)
    assert encoder.embed_dim == 3 * 2 * 2 + 3
