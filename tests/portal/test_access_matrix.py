"""Who may reach what: every endpoint of the portal (read from the application's URL map, so a
new endpoint fails here until it has an entry) against every kind of caller.

Callers: the owner of the objects (a student), another student, the teacher of the owner's
course, a teacher of another course, an admin, and callers without a valid identity
(anonymous, an expired token, a revoked token). Answers are checked by class:

    401      no valid identity
    403      only where a role is required (admin APIs, teachers' course APIs)
    404      an object the caller may not see, never 403 and never 2xx
    reach    the view acted: 2xx, or a 4xx that is neither 401, 403 nor 404 (409 busy, ...)
    answer   a public endpoint: anything but 401, 403 and 5xx

The objects are made once for the module, straight in the store (no lab is deployed, no
worker runs): a private template of the owner and its lab (with a deploy job that ended
without running) in the course of one teacher, a reservation of the owner in that course, a
public template of that teacher for new labs, reservations and courses, a booking of the
private template (it stays in use), and a course with a join code of the other teacher.
Requests that queue work put it in this run's Redis database, flushed before and after; jobs
they leave queued are cancelled after each test (tests/portal/conftest.py).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import yaml
from redis import Redis
from sqlalchemy import select

from portal.auth import new_token, token_hash
from store.db import session_factory
from store.labs import finish_job, request_task
from store.models import (
    ApiToken,
    Course,
    CourseMember,
    Job,
    JobStatus,
    Lab,
    Reservation,
    Role,
    Template,
    TemplateVersion,
    User,
    Visibility,
    utcnow,
)
from tests.app_config import portal_app
from tests.integration.conftest import TOPOLOGIES
from tests.portal.conftest import PASSWORD, password_hash_of

PAIR = (TOPOLOGIES / "pair.lab.yml").read_text().replace("name: NAME", "name: p5-pair")

OWNER, OTHER_STUDENT, COURSE_TEACHER, OTHER_TEACHER, ADMIN = (
    "owner",
    "other_student",
    "course_teacher",
    "other_teacher",
    "admin",
)
LOGGED_IN = (OTHER_STUDENT, OTHER_TEACHER, COURSE_TEACHER, ADMIN, OWNER)
WITHOUT_IDENTITY = ("anonymous", "expired", "revoked")
# The owner comes last: what the owner changes (a cancel, a revoke) is checked after the
# others have tried to reach it.
CALLERS = WITHOUT_IDENTITY + LOGGED_IN

REACH, ANSWER = "reach", "answer"


def public() -> dict[str, object]:
    return dict.fromkeys(CALLERS, ANSWER)


def any_user() -> dict[str, object]:
    return dict.fromkeys(WITHOUT_IDENTITY, 401) | dict.fromkeys(LOGGED_IN, REACH)


def seen_by(*callers: str) -> dict[str, object]:
    """An object: these callers reach it, other users get 404."""
    return dict.fromkeys(WITHOUT_IDENTITY, 401) | {
        caller: REACH if caller in callers else 404 for caller in LOGGED_IN
    }


def roles_only(*callers: str, hidden: tuple[str, ...] = ()) -> dict[str, object]:
    """A role-gated endpoint: callers of the wrong role get 403; `hidden` have the role but
    may not see the object (404)."""
    return dict.fromkeys(WITHOUT_IDENTITY, 401) | {
        caller: REACH if caller in callers else 404 if caller in hidden else 403
        for caller in LOGGED_IN
    }


LAB_SEERS = (OWNER, COURSE_TEACHER, ADMIN)
TEACHERS = (COURSE_TEACHER, OTHER_TEACHER, ADMIN)

# (method, URL rule) -> expected answer class by caller. Every rule of the application must
# be here (test_every_endpoint_has_a_matrix_entry).
MATRIX: dict[tuple[str, str], dict[str, object]] = {
    ("POST", "/api/auth/login"): public(),
    ("POST", "/api/auth/logout"): public(),
    ("GET", "/api/auth/me"): any_user(),
    ("GET", "/api/auth/admin"): roles_only(ADMIN),
    ("POST", "/api/auth/password"): any_user(),
    ("POST", "/api/auth/tokens"): any_user(),
    ("GET", "/api/auth/tokens"): any_user(),
    # Tokens are their user's own: nobody else, not even an admin, reaches one.
    ("DELETE", "/api/auth/tokens/<int:token_id>"): seen_by(OWNER),
    ("GET", "/api/capacity"): any_user(),
    # The bastion's own question: only its secret opens it, no user identity does.
    ("GET", "/api/bastion/authorized-keys"): dict.fromkeys(CALLERS, 401),
    ("GET", "/api/hypervisors/usage"): roles_only(ADMIN),
    ("POST", "/api/courses"): roles_only(*TEACHERS),
    ("GET", "/api/courses"): any_user(),
    ("POST", "/api/courses/join"): any_user(),
    ("GET", "/api/courses/<int:course_id>"): seen_by(OWNER, COURSE_TEACHER, ADMIN),
    ("POST", "/api/courses/<int:course_id>/reset"): roles_only(
        COURSE_TEACHER, ADMIN, hidden=(OTHER_TEACHER,)
    ),
    ("POST", "/api/courses/<int:course_id>/students/<int:user_id>/reset"): roles_only(
        COURSE_TEACHER, ADMIN, hidden=(OTHER_TEACHER,)
    ),
    ("PATCH", "/api/courses/<int:course_id>"): roles_only(
        COURSE_TEACHER, ADMIN, hidden=(OTHER_TEACHER,)
    ),
    ("POST", "/api/courses/<int:course_id>/students"): roles_only(
        COURSE_TEACHER, ADMIN, hidden=(OTHER_TEACHER,)
    ),
    ("DELETE", "/api/courses/<int:course_id>/students/<int:user_id>"): roles_only(
        COURSE_TEACHER, ADMIN, hidden=(OTHER_TEACHER,)
    ),
    ("GET", "/api/jobs/<job_id>"): seen_by(*LAB_SEERS),
    ("GET", "/api/jobs/<job_id>/events"): seen_by(*LAB_SEERS),
    ("GET", "/api/jobs/<job_id>/stream"): seen_by(*LAB_SEERS),
    ("POST", "/api/labs"): any_user(),
    ("GET", "/api/labs"): any_user(),
    ("GET", "/api/labs/<int:lab_id>"): seen_by(*LAB_SEERS),
    ("DELETE", "/api/labs/<int:lab_id>"): seen_by(*LAB_SEERS),
    ("GET", "/api/labs/<int:lab_id>/capture"): seen_by(*LAB_SEERS),
    ("GET", "/api/labs/<int:lab_id>/jobs"): seen_by(*LAB_SEERS),
    ("GET", "/api/labs/<int:lab_id>/nodes/<name>"): seen_by(*LAB_SEERS),
    ("GET", "/api/labs/<int:lab_id>/picture.svg"): seen_by(*LAB_SEERS),
    ("GET", "/api/labs/<int:lab_id>/usage"): seen_by(*LAB_SEERS),
    ("POST", "/api/labs/<int:lab_id>/tasks/<task>"): seen_by(*LAB_SEERS),
    ("GET", "/api/labs/<int:lab_id>/ssh_config"): seen_by(*LAB_SEERS),
    ("POST", "/api/reservations"): any_user(),
    ("GET", "/api/reservations"): any_user(),
    ("GET", "/api/reservations/<int:reservation_id>"): seen_by(*LAB_SEERS),
    ("PATCH", "/api/reservations/<int:reservation_id>"): seen_by(*LAB_SEERS),
    ("DELETE", "/api/reservations/<int:reservation_id>"): seen_by(*LAB_SEERS),
    ("POST", "/api/templates"): any_user(),
    ("GET", "/api/templates"): any_user(),
    ("POST", "/api/templates/validate"): any_user(),
    # The owner's private template: its course's teacher does not see it either.
    ("GET", "/api/templates/<int:template_id>"): seen_by(OWNER, ADMIN),
    ("PUT", "/api/templates/<int:template_id>"): seen_by(OWNER, ADMIN),
    ("DELETE", "/api/templates/<int:template_id>"): seen_by(OWNER, ADMIN),
    ("GET", "/api/templates/<int:template_id>/picture.svg"): seen_by(OWNER, ADMIN),
    ("GET", "/api/templates/<int:template_id>/versions/<int:number>"): seen_by(OWNER, ADMIN),
    ("GET", "/api/users/me/keys"): any_user(),
    ("POST", "/api/users/me/keys"): any_user(),
    # Keys are their user's own; the matrix's key is nobody's here: 404 for everyone.
    ("DELETE", "/api/users/me/keys/<int:key_id>"): seen_by(),
    ("GET", "/api/users"): roles_only(ADMIN),
    ("POST", "/api/users"): roles_only(ADMIN),
    ("GET", "/api/users/<int:user_id>"): roles_only(ADMIN),
    ("PATCH", "/api/users/<int:user_id>"): roles_only(ADMIN),
    ("DELETE", "/api/users/<int:user_id>"): roles_only(ADMIN),
    ("GET", "/docs"): public(),
    ("GET", "/docs/oauth2-redirect"): public(),
    ("GET", "/metrics"): public(),
    ("GET", "/openapi.json"): public(),
    ("GET", "/static/<path:filename>"): public(),
}


def endpoints_of(app) -> set[tuple[str, str]]:
    """The API's endpoints; the browser pages (blueprint `ui`) have their own check,
    tests/ui/test_pages_need_login.py."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if not rule.endpoint.startswith("ui.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


@dataclass
class World:
    app: object
    tokens: dict[str, str | None]  # caller -> bearer token (None: anonymous)
    users: dict[str, User]
    private_template: int
    public_template: int
    lab: int
    job: str
    reservation: int
    course: int
    join_code: str
    spare_token: int
    slot: tuple[str, str]


def _user(session, role: Role, caller: str) -> User:
    user = User(
        username=f"p5-{caller.replace('_', '-')}-{uuid.uuid4().hex[:6]}",
        password_hash=password_hash_of(PASSWORD),
        role=role.value,
        disabled=False,
        session_epoch=0,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def _token(session, user: User, expires_in: timedelta, revoked: bool = False) -> ApiToken:
    token = new_token()
    now = utcnow()
    row = ApiToken(
        user_id=user.id,
        name="p5",
        token_hash=token_hash(token),
        prefix=token[:12],
        created_at=now - timedelta(days=2),
        expires_at=now + expires_in,
        revoked_at=now if revoked else None,
    )
    session.add(row)
    session.flush()
    row.token = token
    return row


def _template(session, owner: User, visibility: Visibility) -> tuple[Template, TemplateVersion]:
    now = utcnow()
    template = Template(
        owner_id=owner.id,
        name=f"p5-{uuid.uuid4().hex[:6]}",
        visibility=visibility.value,
        created_at=now,
        updated_at=now,
    )
    version = TemplateVersion(number=1, topology=PAIR, created_at=now, created_by_id=owner.id)
    template.versions.append(version)
    session.add(template)
    session.flush()
    return template, version


@pytest.fixture(scope="module")
def world(job_settings, tmp_path_factory) -> Iterator[World]:
    """The users, their tokens and the objects of the matrix, made once."""
    redis = Redis.from_url(job_settings.redis_url)
    redis.flushdb()
    inventory = tmp_path_factory.mktemp("p5-inventory")
    (inventory / "group_vars").mkdir()
    host = {"ansible_connection": "local", "ltb_capacity_cpus": 4096, "ltb_capacity_memory": 2**44}
    (inventory / "hosts.yaml").write_text(
        yaml.safe_dump({"hypervisors": {"hosts": {"localhost": host}}})
    )
    # A day of its own, years ahead (the other portal tests book within about 21 years).
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    day = today + timedelta(weeks=1200 + secrets.randbelow(500))
    slot = (day + timedelta(hours=9), day + timedelta(hours=10))
    store = session_factory(job_settings.database_url)
    with store() as session:
        roles = {
            OWNER: Role.STUDENT,
            OTHER_STUDENT: Role.STUDENT,
            COURSE_TEACHER: Role.TEACHER,
            OTHER_TEACHER: Role.TEACHER,
            ADMIN: Role.ADMIN,
        }
        users = {caller: _user(session, role, caller) for caller, role in roles.items()}
        tokens: dict[str, str | None] = {
            caller: _token(session, user, timedelta(days=1)).token for caller, user in users.items()
        }
        tokens["anonymous"] = None
        tokens["expired"] = _token(session, users[OWNER], timedelta(seconds=-1)).token
        tokens["revoked"] = _token(session, users[OWNER], timedelta(days=1), revoked=True).token
        spare_token = _token(session, users[OWNER], timedelta(days=1)).id

        private, private_v1 = _template(session, users[OWNER], Visibility.PRIVATE)
        public_template, public_v1 = _template(session, users[COURSE_TEACHER], Visibility.PUBLIC)
        course = Course(
            name="p5 course",
            teacher_id=users[COURSE_TEACHER].id,
            template_version_id=public_v1.id,
            start_at=slot[0],
            end_at=slot[1],
            created_at=utcnow(),
        )
        course.members.append(CourseMember(user_id=users[OWNER].id))
        join_code = secrets.token_urlsafe(9)
        joinable = Course(
            name="p5 joinable",
            teacher_id=users[OTHER_TEACHER].id,
            join_code=join_code,
            template_version_id=public_v1.id,
            start_at=slot[0],
            end_at=slot[1],
            created_at=utcnow(),
        )
        session.add_all([course, joinable])
        session.flush()

        # The owner's lab of the private template in the course, recorded as a deploy that
        # ended without running (nothing deployed, its allocation given back).
        lab_name = f"p5-{uuid.uuid4().hex[:8]}"
        job = request_task(
            session,
            lab_name,
            "deploy",
            topology=PAIR.replace("name: p5-pair", f"name: {lab_name}"),
            owner=users[OWNER].username,
            owner_id=users[OWNER].id,
            template_version_id=private_v1.id,
            course_id=course.id,
        )
        finish_job(session, job, JobStatus.FAILED, {"error": "p5: never ran"})
        reservation = Reservation(
            lab_name=f"p5-{uuid.uuid4().hex[:8]}",
            owner=users[OWNER].username,
            owner_id=users[OWNER].id,
            template_version_id=public_v1.id,
            course_id=course.id,
            topology=PAIR,
            start_at=slot[0],
            end_at=slot[1],
            state="scheduled",
        )
        # A booking of the private template keeps it in use: every caller's DELETE of it
        # is answered 409 (a reach) and none removes it before the next caller tries.
        keeps_private_template = Reservation(
            lab_name=f"p5-{uuid.uuid4().hex[:8]}",
            owner=users[OWNER].username,
            owner_id=users[OWNER].id,
            template_version_id=private_v1.id,
            topology=PAIR,
            start_at=slot[0],
            end_at=slot[1],
            state="scheduled",
        )
        session.add_all([reservation, keeps_private_template])
        session.commit()
        ids = (private.id, public_template.id, job.lab_id, job.id, reservation.id, course.id)
        for user in users.values():
            session.refresh(user)
            session.expunge(user)

    app = portal_app(
        job_settings.database_url, inventory, LTB_SSE_MAX_SECONDS=1, LTB_SSE_HEARTBEAT=0.5
    )
    try:
        yield World(
            app,
            tokens,
            users,
            *ids,
            join_code=join_code,
            spare_token=spare_token,
            slot=(slot[0].isoformat(), slot[1].isoformat()),
        )
    finally:
        redis.flushdb()
        redis.close()


def fresh_student(world: World, in_course: bool) -> User:
    """A student made for one request that adds or removes a student of the course, so that
    no caller's request changes what the next one finds (or the owner's membership)."""
    with session_factory(world.app.config["SQLALCHEMY_DATABASE_URI"])() as session:
        user = _user(session, Role.STUDENT, "newcomer")
        if in_course:
            session.add(CourseMember(course_id=world.course, user_id=user.id))
        session.commit()
        session.refresh(user)
        session.expunge(user)
        return user


def request_of(world: World, method: str, rule: str) -> tuple[str, dict | None]:
    """The URL and JSON body that reach the matrix's object through `rule`: valid input, so
    that an answer tells who may reach the object, not what the input lacks."""
    owner = world.users[OWNER]
    if (method, rule) == ("DELETE", "/api/courses/<int:course_id>/students/<int:user_id>"):
        owner = fresh_student(world, in_course=True)
    url = (
        rule.replace("<int:token_id>", str(world.spare_token))
        .replace("<int:key_id>", "2147483647")
        .replace("<int:course_id>", str(world.course))
        .replace("<int:user_id>", str(owner.id))
        .replace("<job_id>", world.job)
        .replace("<int:lab_id>", str(world.lab))
        .replace("<name>", "a")
        .replace("<task>", "snapshot")
        .replace("<int:reservation_id>", str(world.reservation))
        .replace("<int:template_id>", str(world.private_template))
        .replace("<int:number>", "1")
        .replace("<path:filename>", "nothing.txt")
    )
    start, end = world.slot
    bodies = {
        ("POST", "/api/auth/login"): {"username": owner.username, "password": PASSWORD},
        # The same password again: the caller keeps it (and its tokens).
        ("POST", "/api/auth/password"): {"old_password": PASSWORD, "new_password": PASSWORD},
        ("POST", "/api/auth/tokens"): {"name": "p5"},
        ("POST", "/api/courses"): {
            "name": "p5 new course",
            "template_id": world.public_template,
            "start_at": start,
            "end_at": end,
        },
        ("POST", "/api/courses/join"): {"code": world.join_code},
        ("PATCH", "/api/courses/<int:course_id>"): {"name": "p5 course"},
        ("POST", "/api/courses/<int:course_id>/students"): (
            {"students": [fresh_student(world, in_course=False).username]}
            if rule == "/api/courses/<int:course_id>/students"
            else None
        ),
        ("POST", "/api/labs"): {"template_id": world.public_template},
        ("POST", "/api/labs/<int:lab_id>/tasks/<task>"): {"params": {}},
        ("POST", "/api/reservations"): {
            "template_id": world.public_template,
            "start_at": start,
            "end_at": end,
        },
        ("PATCH", "/api/reservations/<int:reservation_id>"): {},
        ("POST", "/api/templates"): {"name": "p5-upload", "topology": PAIR},
        ("POST", "/api/templates/validate"): {"topology": PAIR},
        ("PUT", "/api/templates/<int:template_id>"): {"description": "p5 was here"},
        ("POST", "/api/users"): {
            "username": f"p5-new-{uuid.uuid4().hex[:6]}",
            "password": PASSWORD,
        },
        ("PATCH", "/api/users/<int:user_id>"): {},
    }
    if rule == "/api/labs/<int:lab_id>/capture":
        url += "?endpoint=a:eth1&seconds=1"
    return url, bodies.get((method, rule))


def answer_class_holds(expected: object, status: int) -> bool:
    if status >= 500:
        return False
    if expected == REACH:
        return 200 <= status < 300 or (400 <= status < 500 and status not in (401, 403, 404))
    if expected == ANSWER:
        return status not in (401, 403)
    return status == expected


def test_every_endpoint_has_a_matrix_entry(world):
    endpoints = endpoints_of(world.app)
    missing = sorted(endpoints - MATRIX.keys())
    assert not missing, f"endpoints without an access matrix entry (add them to MATRIX): {missing}"
    stale = sorted(MATRIX.keys() - endpoints)
    assert not stale, f"matrix entries of endpoints that no longer exist: {stale}"


CASES = [
    pytest.param(method, rule, caller, id=f"{method} {rule} as {caller}")
    for (method, rule), expected in MATRIX.items()
    for caller in CALLERS
]


@pytest.mark.integration
@pytest.mark.parametrize(("method", "rule", "caller"), CASES)
def test_each_caller_gets_the_answer_class_of_the_matrix(world, method, rule, caller):
    expected = MATRIX[(method, rule)][caller]
    url, body = request_of(world, method, rule)
    token = world.tokens[caller]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # No cookies: each request is its caller's alone (a login here starts no session later).
    client = world.app.test_client(use_cookies=False)
    response = client.open(url, method=method, json=body, headers=headers, buffered=False)
    try:
        status = response.status_code
        detail = response.get_json(silent=True) if not response.is_streamed else None
    finally:
        response.close()
    assert answer_class_holds(expected, status), (
        f"{method} {url} as {caller}: {status}, expected {expected}; {detail}"
    )


@pytest.mark.integration
def test_a_student_never_learns_that_anothers_object_exists(world):
    """Another student's lab, job, reservation and template answer exactly as ids that do
    not exist: the same status and the same message."""
    client = world.app.test_client(use_cookies=False)
    headers = {"Authorization": f"Bearer {world.tokens[OTHER_STUDENT]}"}
    pairs = [
        (f"/api/labs/{world.lab}", "/api/labs/999999999"),
        (f"/api/jobs/{world.job}", f"/api/jobs/{uuid.uuid4()}"),
        (f"/api/reservations/{world.reservation}", "/api/reservations/999999999"),
        (f"/api/templates/{world.private_template}", "/api/templates/999999999"),
        (f"/api/courses/{world.course}", "/api/courses/999999999"),
    ]
    for existing, missing in pairs:
        seen = client.get(existing, headers=headers)
        unseen = client.get(missing, headers=headers)
        assert (seen.status_code, seen.get_json()) == (unseen.status_code, unseen.get_json()), (
            existing
        )
        assert seen.status_code == 404


@pytest.mark.integration
def test_a_disabled_users_token_is_refused(world, job_settings):
    """A token stays in the store when its user is disabled, and it opens nothing."""
    store = session_factory(job_settings.database_url)
    with store() as session:
        user = _user(session, Role.STUDENT, "disabled")
        token = _token(session, user, timedelta(days=1)).token
        user.disabled = True
        session.commit()
    client = world.app.test_client(use_cookies=False)
    answer = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401


def test_the_matrix_names_only_known_callers():
    for key, row in MATRIX.items():
        assert set(row) == set(CALLERS), key


@pytest.mark.integration
def test_the_matrix_leaves_no_job_queued_for_a_later_tests_worker(world, job_settings):
    """Runs after the matrix (file order): the labs its callers started and the removes they
    asked for are queued in the store with no worker to take them; left queued, a later test's
    scheduler queues them again and its worker deployed a lab nothing removed."""
    callers = [user.id for user in world.users.values()]
    with session_factory(job_settings.database_url)() as session:
        jobs = session.execute(
            select(Lab.name, Job.task, Job.status).join(Job.lab).where(Lab.owner_id.in_(callers))
        ).all()
    assert any(status == JobStatus.CANCELED.value for _, _, status in jobs), jobs
    queued = [(name, task) for name, task, status in jobs if status == JobStatus.QUEUED.value]
    assert not queued, f"jobs left queued: {queued}"
