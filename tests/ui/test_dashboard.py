"""The dashboard shows a user their own labs, reservations to come, courses and quota use,
and nothing of anyone else's."""

from __future__ import annotations

from datetime import timedelta

from store.models import Course, CourseMember, Lab, LabState, Reservation, utcnow
from tests.portal.conftest import app, client, login  # noqa: F401


def add(store, *rows):
    with store() as session:
        session.add_all(rows)
        session.commit()
        return [getattr(row, "id", None) for row in rows]


def lab_of(user, name: str, state: LabState) -> Lab:
    now = utcnow()
    return Lab(
        name=name,
        owner_id=user.id,
        title=f"{name} title",
        topology="name: x\n",
        state=state.value,
        hypervisor="localhost",
        created_at=now,
        updated_at=now,
    )


def reservation_of(user, lab_name: str) -> Reservation:
    start = utcnow() + timedelta(days=2)
    return Reservation(
        lab_name=lab_name,
        owner_id=user.id,
        topology="name: x\n",
        start_at=start,
        end_at=start + timedelta(hours=2),
        state="scheduled",
        late=False,
    )


def test_the_dashboard_shows_my_labs_reservations_courses_and_quota_use(
    client,  # noqa: F811
    login,  # noqa: F811
    make_user,
    store,
):
    student, other, teacher = make_user("student"), make_user("student"), make_user("teacher")
    suffix = student.username[-6:]
    add(
        store,
        lab_of(student, f"mine-{suffix}", LabState.RUNNING),
        lab_of(other, f"theirs-{suffix}", LabState.RUNNING),
        reservation_of(student, f"booked-{suffix}"),
        reservation_of(other, f"elsewhere-{suffix}"),
    )
    (course_id,) = add(
        store, Course(name=f"Routing {suffix}", teacher_id=teacher.id, created_at=utcnow())
    )
    add(store, CourseMember(course_id=course_id, user_id=student.id))

    login(client, student)
    html = client.get("/").get_data(as_text=True)
    assert f"mine-{suffix} title" in html and f"theirs-{suffix}" not in html
    assert f"booked-{suffix}" in html and f"elsewhere-{suffix}" not in html
    assert f"Routing {suffix}" in html and "(student)" in html
    # One running lab of the default quota, memory in GiB rather than bytes.
    assert "1 of 2" in html and "GiB" in html

    client.post("/api/auth/logout")
    login(client, teacher)
    assert f"Routing {suffix}</a>" in client.get("/").get_data(as_text=True)
