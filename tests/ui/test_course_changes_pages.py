"""Changing a course on its page (forms posted as a browser posts them, through the Flask
test client, against the real PostgreSQL and Redis): the teacher moves the slot, adds and
removes students; a refusal is shown in words next to the form; students may do none of it.
The course page's accessibility is checked in the browser by
tests/ui/test_reservations_and_courses.py (its teacher's page shows these forms)."""

from __future__ import annotations

from datetime import timedelta

from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import login  # noqa: F401
from tests.ui import test_reservations_and_courses as pages

app, hypervisors, template = pages.app, pages.hypervisors, pages.template
week, course, browser_of = pages.week, pages.course, pages.browser_of
at, page, alert, reservations_of = pages.at, pages.page, pages.alert, pages.reservations_of


def edit_form(csrf, template_id, week, **changes) -> dict:
    """The edit form as the course page fills it, with `changes`."""
    return {
        "csrf": csrf,
        "name": "u3 networks 101",
        "template_id": str(template_id),
        "version": "1",
        "start_at": at(week, 9),
        "end_at": at(week, 11),
        **changes,
    }


def test_the_course_page_offers_the_teacher_the_course_as_it_is_to_change(course, browser_of):
    course_id, teacher, (ann, _), _ = course
    client, _ = browser_of(teacher)
    html = page(client.get(f"/courses/{course_id}"))
    assert 'id="edit-name"' in html and 'value="u3 networks 101"' in html
    assert 'id="add-students"' in html
    assert f"/courses/{course_id}/students/{ann.id}/remove" in html


def test_the_teacher_moves_the_slot_and_every_reservation_follows(
    course, browser_of, store, template, week
):
    course_id, teacher, _, before = course
    client, csrf = browser_of(teacher)
    form = edit_form(csrf, template, week, start_at=at(week, 14), end_at=at(week, 16))
    answer = client.post(f"/courses/{course_id}/edit", data=form)
    assert answer.status_code == 302, page(answer)
    after = reservations_of(store, course_id)
    assert set(after) == set(before)
    for reservation in after.values():
        assert reservation.start_at == week + timedelta(hours=14)
        assert reservation.end_at == week + timedelta(hours=16)
    shown = page(client.get(f"/courses/{course_id}"))
    assert "2 student reservations follow it" in shown


def test_a_refused_change_is_shown_next_to_the_field_and_nothing_moves(
    course, browser_of, store, template, week
):
    course_id, teacher, _, before = course
    client, csrf = browser_of(teacher)
    form = edit_form(csrf, template, week, end_at=at(week, 8))
    answer = client.post(f"/courses/{course_id}/edit", data=form)
    assert answer.status_code == 422
    html = page(answer)
    assert "is not after start_at" in alert(html, "edit-error")
    assert 'id="edit-end" name="end_at" aria-invalid="true"' in html
    assert {r.end_at for r in reservations_of(store, course_id).values()} == {
        r.end_at for r in before.values()
    }


def test_the_teacher_adds_a_student_and_an_unknown_name_is_shown_next_to_the_form(
    course, browser_of, make_user, store
):
    course_id, teacher, _, _ = course
    client, csrf = browser_of(teacher)
    carl = make_user("student")
    added = client.post(
        f"/courses/{course_id}/students", data={"csrf": csrf, "students": carl.username}
    )
    assert added.status_code == 302, page(added)
    assert carl.id in reservations_of(store, course_id)
    unknown = client.post(
        f"/courses/{course_id}/students", data={"csrf": csrf, "students": "u3-nobody"}
    )
    assert unknown.status_code == 422
    assert "u3-nobody" in alert(page(unknown), "add-error")


def test_removing_a_student_asks_first_then_cancels_their_reservation(course, browser_of, store):
    course_id, teacher, (ann, bob), _ = course
    client, csrf = browser_of(teacher)
    confirm = page(client.get(f"/courses/{course_id}/students/{ann.id}/remove"))
    assert f"Remove {ann.username} from" in confirm
    gone = client.post(f"/courses/{course_id}/students/{ann.id}/remove", data={"csrf": csrf})
    assert gone.status_code == 302
    reservations = reservations_of(store, course_id)
    assert reservations[ann.id].state == "cancelled"
    assert reservations[bob.id].state == "scheduled"
    shown = page(client.get(f"/courses/{course_id}"))
    assert f"{ann.username} is no longer a student of the course." in shown
    again = client.get(f"/courses/{course_id}/students/{ann.id}/remove")
    assert again.status_code == 404


def test_students_may_not_change_a_course_or_its_students(course, browser_of, template, week):
    course_id, _, (ann, bob), _ = course
    client, csrf = browser_of(ann)
    assert 'id="edit-name"' not in page(client.get(f"/courses/{course_id}"))
    posts = {
        f"/courses/{course_id}/edit": edit_form(csrf, template, week, name="mine"),
        f"/courses/{course_id}/students": {"csrf": csrf, "students": ann.username},
        f"/courses/{course_id}/students/{bob.id}/remove": {"csrf": csrf},
    }
    for path, form in posts.items():
        assert client.post(path, data=form).status_code == 403, path
