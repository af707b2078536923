"""Notifiers: tell people about releases. A notifier that is down never fails a release."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import httpx
from dagster import ConfigurableResource

logger = logging.getLogger(__name__)


class Notifier(ConfigurableResource, ABC):
    @abstractmethod
    def send(self, text: str, channel: str | None = None, failure: bool = False) -> bool:
        """Post a message; False (and a log line) if it could not be delivered. Never raises."""


class NullNotifier(Notifier):
    """Where the catalog configures no notifications."""

    def send(self, text: str, channel: str | None = None, failure: bool = False) -> bool:
        return True


class SlackWebhook(Notifier):
    """A Slack-compatible incoming webhook (the URL is a secret: EnvVar only)."""

    webhook_url: str
    info_channel: str | None = None
    failure_channel: str | None = None
    timeout_seconds: float = 5.0

    def send(self, text: str, channel: str | None = None, failure: bool = False) -> bool:
        channel = channel or (self.failure_channel if failure else self.info_channel)
        payload: dict = {"text": text}
        if channel:
            payload["channel"] = channel
        try:
            resp = httpx.post(self.webhook_url, json=payload, timeout=self.timeout_seconds)
            if resp.status_code >= 300:
                logger.warning("notification to %s not delivered: HTTP %s", channel or "webhook", resp.status_code)
                return False
            return True
        except httpx.HTTPError as exc:
            # The URL is a secret: name the channel, never the URL.
            logger.warning("notification to %s not delivered: %s", channel or "webhook", type(exc).__name__)
            return False
