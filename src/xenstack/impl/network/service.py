"""The host's switch as a service of the toolstack: started, reconciled, stopped."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...net import Switch
from .reconcile import Repairs, reconcile

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)


class NetworkService:
    def __init__(self, services: Services, switch: Switch) -> None:
        self.services = services
        self.switch = switch
        self.repairs = Repairs()
        self.started = False

    async def start(self) -> None:
        await self.switch.start()
        self.started = True
        self.repairs = await reconcile(self.services)

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await self.switch.stop()
