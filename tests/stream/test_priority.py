from __future__ import annotations

import pytest

from processors.text import is_question
from schemas.events import ChatEvent, MessageType, Priority
from stream.engine.priority import classify, is_crisis, is_urgent_and_negative


def _event(
    content: str,
    message_type: MessageType = MessageType.MESSAGE,
    priority: Priority | None = None,
) -> ChatEvent:
    return ChatEvent(
        event_id="e",
        bot_id="b",
        channel_id="c",
        user_id="u",
        content=content,
        message_type=message_type,
        priority=priority,
    )


def test_explicit_priority_wins() -> None:
    """An explicit event.priority overrides every rule."""
    assert classify(_event("I want to kill myself", priority=Priority.LOW)) is Priority.LOW
    assert classify(_event("hello", priority=Priority.CRITICAL)) is Priority.CRITICAL
    assert classify(_event("status", MessageType.SYSTEM, Priority.HIGH)) is Priority.HIGH


@pytest.mark.parametrize(
    "text",
    [
        "I want to kill myself",
        "i keep thinking about hurting myself",
        "I've been self-harming again",
        "thinking about suicide",
        "I feel suicidal",
        "I just want to end it all",
        "I don't want to live anymore",
        "there's no reason to live",
        "This is an EMERGENCY",
        "emergency at the office",
        "please help me now",
        "call 911",
        "I'm going to kill you",
        "im gonna shoot everyone",
        "I will hurt him",
        "someone has a gun",
        "my dad is having a heart attack",
        "she can't breathe",
        "I think he overdosed",
        "my friend is unconscious",
        "he's having a seizure",
        "sharp chest pain",
        "it's bleeding heavily",
    ],
)
def test_crisis_language_is_critical(text: str) -> None:
    """Self-harm, emergencies, threats and medical emergencies are CRITICAL."""
    assert is_crisis(text)
    assert classify(_event(text)) is Priority.CRITICAL


@pytest.mark.parametrize(
    "text",
    [
        "I'd kill for a coffee",
        "this commute is killing me",
        "you killed it on stage!",
        "I'm going to shoot you an email",
        "I'll shoot you a message later",
        "not an emergency, just curious",
        "non-emergency line please",
        "I could die laughing",
        "my phone died",
        "skills that help me grow",
        "a breathtaking view",
        "the self-help section",
    ],
)
def test_crisis_false_positive_guards(text: str) -> None:
    """Common idioms and near-misses are not treated as crisis language."""
    assert not is_crisis(text)
    assert classify(_event(text)) is not Priority.CRITICAL


def test_known_limitation_figurative_medical_language() -> None:
    """Documented limitation: figurative medical phrases still match the crisis rule."""
    assert is_crisis("I almost had a heart attack when I saw the price")


@pytest.mark.parametrize(
    "text",
    [
        "this is unacceptable, fix it immediately",
        "URGENT: my account was scammed",
        "I'm furious, I need a refund asap",
        "need this right now, it's a disaster",
        "terrible service!!!",
        "FIX THIS RIGHT NOW",
        "WHY IS NOTHING WORKING ASAP",
    ],
)
def test_urgent_and_negative_is_critical(text: str) -> None:
    """Urgency together with a strongly negative word or shouting is CRITICAL."""
    assert is_urgent_and_negative(text)
    assert classify(_event(text)) is Priority.CRITICAL


@pytest.mark.parametrize(
    "text",
    [
        "urgent: team lunch moved to 1pm",
        "please reply asap, thanks",
        "I hate mondays",
        "THIS IS AMAZING",
        "wow!!!",
        "OK ASAP",
    ],
)
def test_urgency_or_negativity_alone_is_not_critical(text: str) -> None:
    """Urgency without negativity, or negativity without urgency, is not CRITICAL."""
    assert not is_urgent_and_negative(text)
    assert classify(_event(text)) is not Priority.CRITICAL


@pytest.mark.parametrize("message_type", [MessageType.MENTION, MessageType.DM])
def test_mentions_and_dms_are_high(message_type: MessageType) -> None:
    """A mention or DM addresses the bot directly: HIGH."""
    assert classify(_event("hello there", message_type)) is Priority.HIGH


@pytest.mark.parametrize(
    "text",
    [
        "is the store open today?",
        "really??  ",
        "why",
        "Why does this keep failing",
        "how do I reset my password",
        "what's the weather",
        "where is the meeting",
        "can you help with my order",
        "does anyone know the wifi password",
        "do you ship abroad",
        "Isn't it late",
    ],
)
def test_direct_questions_are_high(text: str) -> None:
    """A message ending in "?" or opening like a question is HIGH."""
    assert is_question(text)
    assert classify(_event(text)) is Priority.HIGH


@pytest.mark.parametrize(
    "text",
    [
        "hello everyone",
        "what a day",
        "when I got home the app crashed",
        "do it now please",
        "will do!",
        "how nice",
    ],
)
def test_statements_are_normal(text: str) -> None:
    """Statements, exclamations and imperatives are NORMAL."""
    assert not is_question(text)
    assert classify(_event(text)) is Priority.NORMAL


def test_system_messages_are_low() -> None:
    """SYSTEM messages are LOW, even when they end in a question mark."""
    assert classify(_event("alice joined the channel", MessageType.SYSTEM)) is Priority.LOW
    assert classify(_event("rename channel?", MessageType.SYSTEM)) is Priority.LOW


def test_system_messages_with_crisis_language_are_critical() -> None:
    """Crisis language outranks the SYSTEM rule."""
    assert classify(_event("report: user mentioned suicide", MessageType.SYSTEM)) is (
        Priority.CRITICAL
    )


def test_classification_is_case_insensitive() -> None:
    """Rules match regardless of letter case."""
    assert classify(_event("SUICIDE")) is Priority.CRITICAL
    assert classify(_event("HOW DO I log in")) is Priority.HIGH


def test_plain_message_is_normal() -> None:
    """A message matching no rule is NORMAL."""
    assert classify(_event("thanks, that worked")) is Priority.NORMAL
