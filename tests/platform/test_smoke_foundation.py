from models.enums import Role
from tests.support.factories import make_user


async def test_health_and_security_headers(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_token_of_a_factory_user_is_accepted_by_deps(runtime):
    from api.deps import authenticate_token

    actor = await make_user(runtime, Role.SUPPORT_AGENT)
    principal = await authenticate_token(runtime, actor.token)
    assert principal.id == actor.id
    assert principal.role is Role.SUPPORT_AGENT
