"""The reservations calendar and the course pages, against the real PostgreSQL and Redis:
through the Flask test client (forms posted as a browser posts them) for the rules, and
through headless Chromium for a teacher creating a course, axe checks and screenshots.

Each test books in a week of its own, 1500 to 1800 weeks ahead (tests/portal books within
the first ~1100), so capacity numbers do not depend on other tests.
"""

from __future__ import annotations

import itertools
import re
import secrets
from datetime import datetime, timedelta

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from jobs.reservations import held_edges, scheduler
from store.models import (
    Course,
    Lab,
    Reservation,
    ReservationState,
    Template,
    TemplateVersion,
    Visibility,
    utcnow,
)
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal import test_reservations as booking
from tests.portal.conftest import login  # noqa: F401
from tests.ui.conftest import (
    PHONE,
    WAIT,
    assert_accessible,
    log_in,
    open_page,
    path_of,
    phone,
    screenshot,
)

# The application with a test inventory (its capacity set per test) and a public template of
# two nodes (2 CPUs, 512 MiB), as the API's reservation tests have them.
app, hypervisors, template = booking.app, booking.hypervisors, booking.template

_weeks = itertools.count(1500 + secrets.randbelow(300))
FORM = "%Y-%m-%dT%H:%M"


@pytest.fixture
def week() -> datetime:
    """Monday 00:00 UTC of a week no other test books."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(weeks=next(_weeks), days=-today.weekday())


def at(base: datetime, hours: float) -> str:
    """A time as <input type="datetime-local"> sends it (no zone: the pages mean UTC)."""
    return (base + timedelta(hours=hours)).strftime(FORM)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def browser_of(app, login):  # noqa: F811
    """browser_of(user) -> a test client logged in as the user, and its CSRF token."""

    def make(user):
        client = app.test_client()
        return client, login(client, user)

    return make


def page(answer) -> str:
    return answer.get_data(as_text=True)


def alert(html: str, element_id: str) -> str:
    """The text of the error shown next to a form (the element with this id)."""
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, f"no #{element_id} in the page"
    return found.group(1)


def create_course(client, csrf, template_id, week, students, **extra):
    form = {
        "csrf": csrf,
        "name": "u3 networks 101",
        "template_id": str(template_id),
        "start_at": at(week, 9),
        "end_at": at(week, 11),
        "students": "\n".join(students),
        **extra,
    }
    return client.post("/courses", data=form)


def reservations_of(store, course_id: int) -> dict[int, Reservation]:
    with store() as session:
        rows = session.scalars(select(Reservation).where(Reservation.course_id == course_id))
        return {r.owner_id: r for r in rows}


def started_labs(store, reservations: dict[int, Reservation]) -> dict[int, int]:
    """Lab rows for the reservations, as their start would leave them (no deploy): owner id
    -> lab id."""
    now = utcnow()
    labs = {}
    with store() as session:
        for owner_id, reservation in reservations.items():
            lab = Lab(
                name=reservation.lab_name,
                owner_id=owner_id,
                course_id=reservation.course_id,
                topology=reservation.topology,
                state="running",
                hypervisor="localhost",
                created_at=now,
                updated_at=now,
            )
            session.add(lab)
            session.flush()
            labs[owner_id] = lab.id
        session.commit()
    return labs


@pytest.fixture
def course(browser_of, make_user, template, week, store):
    """A course a teacher created through the form for two students, with a join code:
    (course id, teacher, [ann, bob], {owner id: reservation})."""
    teacher = make_user("teacher")
    ann, bob = make_user("student"), make_user("student")
    client, csrf = browser_of(teacher)
    answer = create_course(
        client, csrf, template, week, [ann.username, bob.username], join_code="1"
    )
    assert answer.status_code == 302, page(answer)
    course_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    return course_id, teacher, [ann, bob], reservations_of(store, course_id)


def test_a_course_created_through_the_form_books_each_student_and_shows_the_teacher_all(
    course, browser_of, store
):
    course_id, teacher, (ann, bob), reservations = course
    assert set(reservations) == {ann.id, bob.id}
    client, _ = browser_of(teacher)
    html = page(client.get(f"/courses/{course_id}"))
    with store() as session:
        code = session.get(Course, course_id).join_code
    assert code and code in html
    for student in (ann, bob):
        assert student.username in html
        assert reservations[student.id].lab_name in html
    assert "Reset every student" in html


def test_each_student_sees_only_their_own_entry_on_the_course_page_and_dashboard(
    course, browser_of, store
):
    course_id, _, (ann, bob), reservations = course
    started_labs(store, reservations)
    for me, other in ((ann, bob), (bob, ann)):
        client, _ = browser_of(me)
        html = page(client.get(f"/courses/{course_id}"))
        assert reservations[me.id].lab_name in html
        assert reservations[other.id].lab_name not in html
        assert other.username not in html
        assert "Join code" not in html
        dashboard = page(client.get("/"))
        assert reservations[me.id].lab_name in dashboard
        assert reservations[other.id].lab_name not in dashboard


def test_a_student_typing_the_others_reservation_url_gets_the_404_page(course, browser_of):
    _, _, (ann, bob), reservations = course
    client, _ = browser_of(ann)
    mine = client.get(f"/reservations/{reservations[ann.id].id}")
    assert mine.status_code == 200
    for path in (
        f"/reservations/{reservations[bob.id].id}",
        f"/reservations/{reservations[bob.id].id}/cancel",
        "/reservations/2147483647",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "Not found" in page(answer) and "No such reservation" in page(answer)


def test_a_student_typing_the_others_lab_url_gets_the_404_page(app, course, browser_of, store):
    if "ui.lab" not in app.view_functions:
        pytest.skip("the lab page (ui.lab) is not built yet")
    _, _, (ann, bob), reservations = course
    labs = started_labs(store, reservations)
    client, _ = browser_of(ann)
    assert client.get(f"/labs/{labs[ann.id]}").status_code == 200
    answer = client.get(f"/labs/{labs[bob.id]}")
    assert answer.status_code == 404 and "Not found" in page(answer)


def test_students_and_other_teachers_may_not_reset_or_see_a_course(course, browser_of, make_user):
    course_id, _, (ann, _bob), _ = course
    student, csrf = browser_of(ann)
    assert student.get(f"/courses/{course_id}/reset").status_code == 403
    assert student.post(f"/courses/{course_id}/reset", data={"csrf": csrf}).status_code == 403
    stranger, csrf = browser_of(make_user("teacher"))
    assert stranger.get(f"/courses/{course_id}").status_code == 404
    assert stranger.post(f"/courses/{course_id}/reset", data={"csrf": csrf}).status_code == 404


def test_a_reset_asks_first_and_says_whose_labs_were_not_running(course, browser_of):
    course_id, teacher, (ann, _bob), _ = course
    client, csrf = browser_of(teacher)
    confirm = page(client.get(f"/courses/{course_id}/reset?student={ann.id}"))
    assert f"Reset {ann.username}'s lab?" in confirm and "Yes, reset" in confirm
    answer = client.post(f"/courses/{course_id}/reset", data={"csrf": csrf, "student": str(ann.id)})
    assert answer.status_code == 302
    html = page(client.get(f"/courses/{course_id}"))
    assert f"Not running, so not reset: {ann.username}." in html
    assert client.get(f"/courses/{course_id}/reset?student=999999").status_code == 404


def test_the_teacher_sees_each_labs_state_and_resets_the_started_ones(
    course,
    browser_of,
    store,
    redis_db,  # noqa: F811
):
    course_id, teacher, (ann, bob), reservations = course
    started_labs(store, reservations)
    with store() as session:
        session.get(Reservation, reservations[ann.id].id).state = ReservationState.STARTED.value
        session.commit()
    client, csrf = browser_of(teacher)
    html = page(client.get(f"/courses/{course_id}"))
    assert html.count('<span class="state state-running">running</span>') == 2
    assert html.count('<span class="state state-started">started</span>') == 1
    assert client.post(f"/courses/{course_id}/reset", data={"csrf": csrf}).status_code == 302
    html = page(client.get(f"/courses/{course_id}"))
    assert f"Reset queued for: {ann.username}. Not running, so not reset: {bob.username}." in html
    assert (reservations[ann.id].id, "reset") in held_edges(scheduler())
    assert (reservations[bob.id].id, "reset") not in held_edges(scheduler())


def test_a_student_joins_a_course_with_its_code_and_gets_their_own_booking(
    course, browser_of, make_user, store
):
    course_id, _, _, _ = course
    with store() as session:
        code = session.get(Course, course_id).join_code
    carol = make_user("student")
    client, csrf = browser_of(carol)
    wrong = client.post("/courses/join", data={"csrf": csrf, "code": "no-such-code"})
    assert wrong.status_code == 404
    assert "No course has this join code" in alert(page(wrong), "join-error")
    answer = client.post("/courses/join", data={"csrf": csrf, "code": code})
    assert answer.status_code == 302
    assert reservations_of(store, course_id)[carol.id].state == ReservationState.SCHEDULED
    again = client.post("/courses/join", data={"csrf": csrf, "code": code})
    assert again.status_code == 409 and "already a student" in alert(page(again), "join-error")


def test_a_course_with_an_unknown_student_is_refused_naming_them_and_not_recorded(
    browser_of, make_user, template, week, store
):
    teacher = make_user("teacher")
    client, csrf = browser_of(teacher)
    answer = create_course(client, csrf, template, week, ["u3-nobody-here"])
    assert answer.status_code == 422
    assert "no such users: u3-nobody-here" in alert(page(answer), "create-error")
    assert 'name="students" aria-invalid="true"' in page(answer)
    with store() as session:
        assert not session.scalars(select(Course).where(Course.teacher_id == teacher.id)).all()


def test_students_see_no_course_form_and_may_not_post_one(browser_of, make_user, template, week):
    client, csrf = browser_of(make_user("student"))
    assert "Create a course" not in page(client.get("/courses"))
    assert create_course(client, csrf, template, week, []).status_code == 403


def book(client, csrf, template_id, start, end, **extra):
    form = {"csrf": csrf, "template_id": str(template_id), "start_at": start, "end_at": end}
    return client.post("/reservations", data=form | extra)


def test_a_booking_refused_for_capacity_shows_the_reason_next_to_the_form(
    browser_of, make_user, template, week, hypervisors, store
):
    hypervisors(free_cpus=1, around=week)  # the template's lab needs 2 CPUs
    student = make_user("student")
    client, csrf = browser_of(student)
    answer = book(client, csrf, template, at(week, 9), at(week, 10))
    assert answer.status_code == 409
    reason = alert(page(answer), "book-error")
    assert "CPU would be over-committed" in reason and "this lab needs 2" in reason
    # The form keeps what was asked, so it can be changed and sent again.
    assert f'value="{at(week, 9)}"' in page(answer)
    with store() as session:
        assert not session.scalars(
            select(Reservation).where(Reservation.owner_id == student.id)
        ).all()


@pytest.mark.parametrize(
    ("start", "end", "words", "field"),
    [
        (9, 8, "is not after start_at", "end_at"),
        (9, 30, "longer than the maximum of 8 h", "end_at"),
        (-24 * 7 * 2000, 1, "is in the past", "start_at"),
        (None, 1, "Start is missing", "start_at"),
    ],
)
def test_a_booking_with_wrong_times_is_refused_in_words_at_the_field(
    browser_of, make_user, template, week, start, end, words, field
):
    client, csrf = browser_of(make_user("student"))
    answer = book(client, csrf, template, "" if start is None else at(week, start), at(week, end))
    assert answer.status_code == 422
    assert words in alert(page(answer), "book-error")
    marked = re.findall(
        r'name="(\w+)" aria-invalid="true" aria-describedby="book-error"', page(answer)
    )
    assert marked == [field]


def test_bookings_move_and_cancel_through_the_forms_after_a_confirmation(
    browser_of, make_user, template, week, store
):
    client, csrf = browser_of(make_user("student"))
    answer = book(client, csrf, template, at(week, 9), at(week, 10))
    assert answer.status_code == 302, page(answer)
    path = answer.headers["Location"]
    reservation_id = int(path.rsplit("/", 1)[1])
    moved = client.post(
        f"{path}/move", data={"csrf": csrf, "start_at": at(week, 9), "end_at": at(week, 12)}
    )
    assert moved.status_code == 302
    with store() as session:
        assert session.get(Reservation, reservation_id).end_at == week + timedelta(hours=12)
    refused = client.post(
        f"{path}/move", data={"csrf": csrf, "start_at": at(week, 9), "end_at": at(week, 8)}
    )
    assert refused.status_code == 422
    assert "is not after start_at" in alert(page(refused), "reservation-error")
    confirm = page(client.get(f"{path}/cancel"))
    assert "Yes, cancel it" in confirm
    assert client.post(f"{path}/cancel", data={"csrf": csrf}).status_code == 302
    with store() as session:
        assert session.get(Reservation, reservation_id).state == ReservationState.CANCELLED
    assert client.post(f"{path}/cancel", data={"csrf": csrf}).status_code == 409


def test_start_now_books_from_now_to_the_end_given(browser_of, make_user, template, store):
    student = make_user("student")
    client, csrf = browser_of(student)
    before = utcnow()
    end = (before + timedelta(hours=2)).strftime(FORM)
    answer = book(client, csrf, template, "", end, start_now="1")
    assert answer.status_code == 302, page(answer)
    with store() as session:
        reservation = session.scalars(
            select(Reservation).where(Reservation.owner_id == student.id)
        ).one()
        assert before <= reservation.start_at <= utcnow()


def test_a_form_without_the_sessions_csrf_token_is_refused(browser_of, make_user, template, week):
    client, _ = browser_of(make_user("student"))
    answer = book(client, "forged", template, at(week, 9), at(week, 10))
    assert answer.status_code == 403 and "This form has expired" in page(answer)


def test_the_calendar_shows_a_week_in_utc_with_free_capacity_and_my_bookings(
    browser_of, make_user, template, week, hypervisors
):
    hypervisors(free_cpus=6, free_memory=4 * 1024**3, around=week)
    client, csrf = browser_of(make_user("student"))
    answer = book(client, csrf, template, at(week, 9), at(week, 11))
    assert answer.status_code == 302, page(answer)
    html = page(client.get(f"/reservations?week={(week + timedelta(days=3)).date()}"))
    assert f"Week of {week.strftime('%A %Y-%m-%d')} (UTC)" in html
    assert f"week={(week - timedelta(days=7)).date()}" in html  # previous
    assert f"week={(week + timedelta(days=7)).date()}" in html  # next
    # Monday 09:00 and 10:00: the booking holds 2 of the 6 free CPUs; 08:00 has all 6.
    cells = re.findall(r'<td class="(free-[a-z]+)">\s*<span class="free">([^<]*)</span>', html)
    assert len(cells) == 7 * 24
    monday = [cells[hour * 7] for hour in range(24)]
    assert monday[8][1].startswith("6 CPU") and monday[9][1].startswith("4 CPU")
    # The shade is the free share of the whole capacity, which holds whatever the run's
    # earlier tests left booked: 08:00 is never shaded as less free than 09:00.
    order = ["free-none", "free-low", "free-mid", "free-high"]
    assert order.index(monday[8][0]) >= order.index(monday[9][0]) > 0, monday[8:10]
    lab_name = re.search(r'class="booking" href="/reservations/\d+">([^<]+)<', html).group(1)
    assert html.count(f">{lab_name}</a>") >= 3  # two hours of the grid and the list


def test_a_week_that_is_not_a_date_is_a_page_in_words(browser_of, make_user):
    client, _ = browser_of(make_user("student"))
    for week in ("yesterday", "0001-01-01", "9999-12-31"):
        answer = client.get(f"/reservations?week={week}")
        assert answer.status_code == 422 and "week" in page(answer), week


# In Chromium: the live server of tests/ui/conftest.py (roomy hypervisors) --------------------


def log_in_afresh(driver, user) -> None:
    """Log in with no earlier session: cookies are the live server's, so they are deleted on
    one of its pages (on about:blank they would stay)."""
    open_page(driver, "/login")
    driver.delete_all_cookies()
    log_in(driver, user)


def public_template(store, owner) -> int:
    """A public template of the two-node lab, owned by `owner`; its id."""
    now = utcnow()
    with store() as session:
        row = Template(
            owner_id=owner.id,
            name="u3-pair",
            visibility=Visibility.PUBLIC.value,
            created_at=now,
            updated_at=now,
        )
        row.versions.append(TemplateVersion(number=1, topology=booking.PAIR, created_at=now))
        session.add(row)
        session.commit()
        return row.id


@pytest.mark.integration
def test_in_the_browser_a_teacher_creates_a_course_for_two_students_who_see_their_own(
    driver,
    make_user,
    store,
    redis_db,  # noqa: F811
):
    teacher = make_user("teacher")
    ann, bob = make_user("student"), make_user("student")
    template_id = public_template(store, teacher)
    start = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(weeks=next(_weeks))
    log_in_afresh(driver, teacher)
    open_page(driver, "/courses")
    driver.find_element(By.ID, "course-name").send_keys("u3 routing lab")
    Select(driver.find_element(By.ID, "course-template")).select_by_value(str(template_id))
    for field, moment in (("course-start", start), ("course-end", start + timedelta(hours=2))):
        driver.execute_script(
            "arguments[0].value = arguments[1]",
            driver.find_element(By.ID, field),
            moment.strftime(FORM),
        )
    driver.find_element(By.ID, "course-students").send_keys(f"{ann.username}\n{bob.username}")
    driver.find_element(By.CSS_SELECTOR, "input[name=join_code]").click()
    driver.find_element(By.XPATH, "//button[text()='Create the course']").click()
    WebDriverWait(driver, WAIT).until(lambda d: re.fullmatch(r"/courses/\d+", path_of(d)))
    course_path = path_of(driver)
    table = driver.find_element(By.CSS_SELECTOR, "table").text
    assert ann.username in table and bob.username in table
    assert_accessible(driver)
    screenshot(driver, "course-teacher")

    course_id = int(course_path.rsplit("/", 1)[1])
    reservations = reservations_of(store, course_id)
    for me, other in ((ann, bob), (bob, ann)):
        log_in_afresh(driver, me)
        open_page(driver, course_path)
        text = driver.find_element(By.ID, "main").text
        assert reservations[me.id].lab_name in text
        assert reservations[other.id].lab_name not in text and other.username not in text
        open_page(driver, f"/reservations/{reservations[other.id].id}")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Not found"


@pytest.mark.integration
def test_in_the_browser_the_calendar_is_accessible(driver, make_user):
    log_in_afresh(driver, make_user("student"))
    open_page(driver, "/reservations")
    assert "(UTC)" in driver.find_element(By.ID, "week-heading").text
    assert_accessible(driver)
    driver.execute_script("document.getElementById('week-heading').scrollIntoView()")
    screenshot(driver, "reservations-calendar")
    open_page(driver, "/courses")
    assert_accessible(driver)
    # On a phone the page keeps its width; the calendar scrolls sideways in its own region.
    phone(driver)
    open_page(driver, "/reservations")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], f"the page is {width} px wide on a phone"
    screenshot(driver, "reservations-calendar-phone")
