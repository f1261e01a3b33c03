"""The stream's filter box: it takes keys only when asked (`/` or a click)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

__all__ = ["FilterBox"]


class FilterBox(Input):
    """The stream's filter. Only `/` (or a click) puts the keys here, never Tab, so
    keys meant for the stream (digits, space, p) cannot end up in it by accident;
    escape or enter hands them back to the stream, keeping the filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Back to the stream", show=False)
    ]

    class Left(Message):
        """The keys go back to the stream."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._open = False

    def allow_focus(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True
        self.focus()

    def on_click(self) -> None:
        self.open()

    def on_blur(self) -> None:
        self._open = False

    def action_leave(self) -> None:
        self.post_message(self.Left())

    def on_input_submitted(self) -> None:
        self.post_message(self.Left())
