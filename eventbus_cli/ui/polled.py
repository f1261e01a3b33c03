"""Tabs that show a listing read from the bus (Consumers, Schedules), read only while shown.

Each read costs the bus work (a pending count per consumer, a page of
schedules), so a listing is read when the dashboard connects, when its tab is
shown, and every few seconds while it stays shown; never while hidden (nor
drawn: a schedule's "in" column changes every second). What
was read lives in the bus's `Listing` (model.py); the tab draws it, or says
why there is nothing to draw:

    not read yet        "reading the schedules…", or the bus's state
    read, none there    the tab's hint: how to add one
    method not found    the bus's server predates them (and it is not asked again)
    another refusal     what the bus said (asked again at the next poll)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from eventbus_cli.ui.model import BusView, Listing

if TYPE_CHECKING:
    from eventbus_client import EventBusClient

__all__ = ["ListingView", "PolledTab"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class ListingView(Protocol[T_contra]):
    """The tab's widget: draws a listing, or `empty_text` when there is nothing in it."""

    def show(self, value: T_contra | None, empty_text: str) -> None: ...


@dataclass(frozen=True)
class PolledTab(Generic[T]):
    #: The TabPane's id.
    pane: str
    #: What it lists, as the notes say it: "reading the {what}…".
    what: str
    #: What the tab says on a bus that has none.
    hint: str
    #: What it says on a bus whose server does not know the method.
    missing: str
    view: ListingView[T]
    #: Which listing of a bus this tab shows.
    listing: Callable[[BusView], Listing[T]]
    #: One bounded read through the client.
    read: Callable[[EventBusClient], Awaitable[T]]

    def polled_on(self, bus: BusView) -> bool:
        """Whether reading it again can say anything new (not on a bus that lacks the method)."""
        return not self.listing(bus).note

    async def load(self, bus: BusView, client: EventBusClient) -> None:
        """Read it into the bus's listing; a refusal becomes a line in the tab, not an error.
        A lost connection is raised: the bus's own state says that."""
        from eventbus_core.errors import ConnectionLost, EventBusError, MethodNotFound

        listing = self.listing(bus)
        try:
            listing.value, listing.problem = await self.read(client), ""
        except MethodNotFound:
            listing.value, listing.note = None, self.missing
        except ConnectionLost:
            raise
        except EventBusError as exc:
            listing.value, listing.problem = None, f"could not read the {self.what}: {exc.message}"

    def draw(self, bus: BusView) -> None:
        listing = self.listing(bus)
        if listing.note or listing.problem:
            empty = listing.note or listing.problem
        elif listing.value is not None:
            empty = self.hint
        elif bus.state == "connected":
            empty = f"reading the {self.what}…"
        else:
            empty = f"{bus.name} is {bus.state}"
        self.view.show(listing.value, empty)
